"""A unix-socket listener that stands where a client expects ffiboxd, for the tests of whom
the Python client agrees to talk to (test_unix_server_check.py). It never answers.

    python3 unix_squatter.py PATH [--uid=N] [--bind-first]

With --uid it switches to uid and gid N (it must start as root): before binding, so the
socket file is N's, or with --bind-first after binding and before listening, so the file is
the starting user's but the listening process (what SO_PEERCRED reports) is N. It prints
"listening", then for each connection (one at a time) "accepted", "received N" per read of N
bytes and "closed", until it is killed.
"""
import argparse
import os
import socket


def switch_to(uid: int) -> None:
    if uid >= 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--uid", type=int, default=-1)
    parser.add_argument("--bind-first", action="store_true")
    args = parser.parse_args()
    if not args.bind_first:
        switch_to(args.uid)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.path)
    if args.bind_first:
        switch_to(args.uid)
    listener.listen(16)
    print("listening", flush=True)
    while True:
        connection, _ = listener.accept()
        print("accepted", flush=True)
        with connection:
            while True:
                data = connection.recv(4096)
                if not data:
                    break
                print("received %d" % len(data), flush=True)
        print("closed", flush=True)


if __name__ == "__main__":
    main()
