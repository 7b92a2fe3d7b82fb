"""The AWS CLI, warm: each ``aws …`` runs the AWS CLI's own entry point (``awscli.clidriver.main``)
with that command's arguments, environment, working directory, umask and standard streams, in a
child forked from a process that has imported the CLI once (tests/test_first_deploy.py).

Each ``aws`` line of docs/OPERATIONS.md's blocks otherwise spends ~0.4 s of its ~0.5 s starting an
interpreter and importing botocore and awscli (measured: ``python -X importtime``, cProfile). The
command itself — argument parsing, the session, credentials, the service model, the request, the
output — runs afresh in each child, as in its own process.

``python warm_aws.py serve SOCKET``: the server (run by the interpreter of the ``aws`` on PATH;
prints ``ready`` once it listens). ``python -IS warm_aws.py SOCKET ARGS…``: one command (what the
``aws`` script :func:`install` writes runs); exits with the command's status.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys

_FDS = 3


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def client(path: str, argv: list[str]) -> int:
    umask = os.umask(0)
    os.umask(umask)
    body = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        socket.send_fds(conn, [struct.pack("!I", len(body))], list(range(_FDS)))
        conn.sendall(body)
        try:
            return struct.unpack("!i", _recv_exactly(conn, 4))[0]
        except EOFError:
            return 255


def _run(conn: socket.socket, fds: list[int], request: dict) -> None:
    """In the forked child: become the command, run it, exit with its status."""
    import fcntl

    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]  # a received fd may be 0, 1 or 2
    for fd in fds:
        os.close(fd)
    for target, fd in enumerate(high):
        os.dup2(fd, target)
        os.close(fd)
    conn.close()
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["aws", *request["argv"]]
    import importlib

    import awscli

    importlib.reload(awscli)  # its import reads the environment (AWS_DATA_PATH): this command's
    from awscli.clidriver import main

    try:
        rc = main()
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # as the CLI's own process would: a traceback, status 255
        import traceback

        traceback.print_exc()
        rc = 255
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc or 0)


def serve(path: str) -> None:
    import threading

    import awscli.clidriver  # noqa: F401 - the import is the point: children inherit it
    import awscli.handlers  # noqa: F401

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    print("ready", flush=True)

    def wait(conn: socket.socket, pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        try:
            conn.sendall(struct.pack("!i", code if code >= 0 else 128 - code))
        finally:
            conn.close()

    while True:
        conn, _ = listener.accept()
        head, fds, _, _ = socket.recv_fds(conn, 4, _FDS)
        if len(head) < 4:
            head += _recv_exactly(conn, 4 - len(head))
        request = json.loads(_recv_exactly(conn, struct.unpack("!I", head)[0]))
        pid = os.fork()
        if pid == 0:
            listener.close()
            _run(conn, fds, request)
        for fd in fds:
            os.close(fd)
        threading.Thread(target=wait, args=(conn, pid), daemon=True).start()


def aws_interpreter(aws: str) -> str | None:
    """The Python interpreter that runs the ``aws`` script ``aws`` (through a pyenv shim too)."""
    import subprocess

    with open(aws, "rb") as f:
        head = f.read(2000).decode(errors="replace")
    first = head.split("\n", 1)[0]
    if first.startswith("#!") and "python" in first:
        return first[2:].split()[0]
    if "pyenv" in head:  # a pyenv shim: the script it runs
        try:
            found = subprocess.run(["pyenv", "which", "aws"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if found.returncode == 0 and found.stdout.strip() != aws:
            return aws_interpreter(found.stdout.strip())
    return None


def install(bin_dir: str, interpreter: str, path: str) -> str:
    """An ``aws`` script in ``bin_dir`` that runs each command on the server at ``path``."""
    script = os.path.join(bin_dir, "aws")
    with open(script, "w") as f:
        f.write(f"#!{interpreter} -IS\nimport sys\nsys.path.insert(0, {os.path.dirname(__file__)!r})\n"
                f"import warm_aws\nsys.exit(warm_aws.client({path!r}, sys.argv[1:]))\n")
    os.chmod(script, 0o755)
    return script


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit(client(sys.argv[1], sys.argv[2:]))
