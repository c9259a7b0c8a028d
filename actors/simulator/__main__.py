"""``python -m actors.simulator``: serve the provider simulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import sys

from actors.simulator.profiles import load_profiles


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m actors.simulator", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8900, help="0 picks a free port")
    ap.add_argument("--latency-scale", type=float, default=1.0, help="0 = no added latency")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--profiles", default=None, help="YAML {model: {field: value}} overrides")
    ap.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="stop when stdin closes (parent died)"
    )
    args = ap.parse_args(argv)
    try:
        overrides = load_profiles(args.profiles) if args.profiles else None
    except (OSError, ValueError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    if args.latency_scale < 0:
        print("simulator: --latency-scale must be >= 0", file=sys.stderr)
        return 2

    import uvloop

    from actors.simulator.server import serve

    uvloop.run(
        serve(
            args.host,
            args.port,
            args.latency_scale,
            args.seed,
            overrides,
            exit_on_stdin_eof=args.exit_on_stdin_eof,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
