"""A Python plugin that misbehaves on command, for the host's tests of its virtual WASI.

The subscription's `mode` says what `handle` does:

- `observe`: one JSON delivery saying what the plugin saw of its world: two readings of each
  clock with a one-second sleep between them, two reads of random bytes, the environment, the
  arguments, stdin, and what happens on opening a file, listing a directory and opening a socket;
- `loop`: loops forever;
- `allocate`: allocates without end;
- `print-forever`: writes to stdout forever;
- `print`: prints a line to stdout and one to stderr, then returns nothing;
- `exit`: calls `sys.exit(3)`;
- `raise`: raises an exception.
"""

import json
import os
import sys
import time

import wit_world
from wit_world.imports import config, types


def attempt(action):
    """What an action did: its result, or the name of the exception it raised."""
    try:
        return {"ok": repr(action())}
    except BaseException as error:  # noqa: BLE001 - the point is to report anything
        return {"error": type(error).__name__}


def open_socket():
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(("127.0.0.1", 80))
    return s


def observe(event):
    wall = [time.time_ns()]
    monotonic = [time.monotonic_ns()]
    time.sleep(1)
    wall.append(time.time_ns())
    monotonic.append(time.monotonic_ns())
    seen = {
        "event": event.id,
        "wall_ns": wall,
        "monotonic_ns": monotonic,
        "random": [os.urandom(16).hex(), os.urandom(16).hex()],
        "environ": dict(os.environ),
        "argv": sys.argv,
        "stdin": attempt(lambda: sys.stdin.read()),
        "open_file": attempt(lambda: open("/etc/passwd").read()),
        "list_root": attempt(lambda: os.listdir("/")),
        "socket": attempt(open_socket),
    }
    return [types.Delivery("", "application/json", json.dumps(seen, sort_keys=True).encode(), [])]


class WitWorld(wit_world.WitWorld):
    def handle(self, event: types.Event) -> list[types.Delivery]:
        mode = config.get("mode")
        if mode == "observe":
            return observe(event)
        if mode == "loop":
            while True:
                pass
        if mode == "allocate":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if mode == "print-forever":
            while True:
                print("all work and no play")
        if mode == "print":
            print("to stdout")
            print("to stderr", file=sys.stderr)
            return []
        if mode == "exit":
            sys.exit(3)
        if mode == "raise":
            raise ValueError("raised on purpose")
        return []

    def validate_config(self) -> None:
        pass
