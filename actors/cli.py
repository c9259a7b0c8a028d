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

    return run(args.config, args.serve_config, args.address, args.host, args.port)


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
    s = sub.add_parser("sim", help="run the provider simulator (see --help of the simulator)")
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=_sim)
    v = sub.add_parser("serve", help="start (or join) Ray, the actors and the HTTP endpoint")
    v.add_argument("--address", default=None, help="Ray address to join (default: start local)")
    v.add_argument("--serve-config", default=None,
                   help="Serve config file (default: configs/serve.yaml)")
    v.add_argument("--host", default=None, help="listen address (default: from the Serve config)")
    v.add_argument("--port", type=int, default=None, help="HTTP port (default: 8000)")
    v.set_defaults(func=_serve)
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
