"""Start a distributed keras-tuner search on this machine: one chief, N workers.

    python -m tuning.launch --workers 2 cnn --tuner random --max-trials 8

The chief serves the oracle on 127.0.0.1 (a free port unless `--port`); each
worker asks it for trials, trains them and reports back; every process shares
the search directory. On several machines run the same thing by hand, with a
directory every machine can reach (e.g. a network file system):

    host-a$ python -m tuning cnn --dir /shared/search --chief 10.0.0.1:8000
    host-b$ python -m tuning cnn --dir /shared/search --worker 10.0.0.1:8000 --worker-id b
    host-c$ python -m tuning cnn --dir /shared/search --worker 10.0.0.1:8000 --worker-id c
"""

import argparse
import signal
import socket
import subprocess
import sys


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tuning.launch", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--port", type=int, default=0, help="oracle port (default: a free one)")
    parser.add_argument("search_args", nargs=argparse.REMAINDER,
                        help="the arguments of `python -m tuning` (recipe first)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if not args.search_args:
        parser.error("give the search's arguments, e.g. `cnn --tuner random`")
    address = f"127.0.0.1:{args.port or free_port()}"
    command = [sys.executable, "-m", "tuning", *args.search_args]
    print(f"[launch] chief and {args.workers} workers on {address}", flush=True)
    # The chief first: it checks (and claims) the search directory.
    chief = subprocess.Popen([*command, "--chief", address])
    workers = [subprocess.Popen([*command, "--worker", address, "--worker-id", f"worker-{i}"])
               for i in range(args.workers)]
    codes = [worker.wait() for worker in workers]
    if not any(codes) and chief.poll() is None:
        # Every trial is done: end the chief's wait (keras-tuner checks every 20 s),
        # so that it writes the report now.
        chief.send_signal(signal.SIGUSR1)
    codes.append(chief.wait())
    failed = [code for code in codes if code]
    if failed:
        print(f"[launch] {len(failed)} process(es) failed: exit codes {codes}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
