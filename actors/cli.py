"""`llm-router` command line: demo, sim, serve (and later backtest)."""

from __future__ import annotations

import argparse
import os
import sys
import time


def _demo(args: argparse.Namespace) -> int:
    from actors.api import connect
    from actors.route import RoutingError

    t0 = time.time()
    print("==> starting local Ray and the router's actors (simulator for providers without keys)")
    llm = connect(args.address, args.config)
    try:
        print(f"    ready in {time.time() - t0:.1f} s")
        prompt = ("Market context: SPY daily, regime: bull, RSI(14) 61.2, MACD histogram +0.8. "
                  "Give a trade signal as JSON.")
        print(f"\n{'provider':<12} {'model':<40} {'sim':<4} {'in':>6} {'out':>6} "
              f"{'cost USD':>10} {'latency':>8}  answer")
        failures = 0
        for name in llm.config.names:
            try:
                r = llm.complete(prompt, provider=name, context={"task": "analysis",
                                                                 "regime": "bull"},
                                 output="trade_signal", max_tokens=512)
            except RoutingError as exc:
                failures += 1
                print(f"{name:<12} FAILED {exc.error_class.value}: {exc.message[:80]}")
                continue
            sim = "yes" if llm.config.simulated(llm.config.provider(name)) else "no"
            sig = r.parsed or {}
            answer = f"{sig.get('direction', '?')} @ conf {sig.get('confidence', 0):.2f}"
            print(f"{name:<12} {r.model:<40} {sim:<4} {r.input_tokens:>6} {r.output_tokens:>6} "
                  f"{r.cost_usd:>10.6f} {r.latency_s * 1000:>6.0f}ms  {answer}")
        print("\n==> cost by model this hour")
        print(llm.costs("hour").to_string())
        return 1 if failures else 0
    finally:
        llm.shutdown()


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
    d = sub.add_parser("demo", help="run the main job on the embedded default")
    d.add_argument("--address", default=None, help="Ray address (default: embedded local)")
    d.set_defaults(func=_demo)
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
