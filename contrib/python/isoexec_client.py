#!/usr/bin/env python3
"""A minimal client of isoexecd's API (proto/isoexec/v1/runtime.proto), as
any gRPC user writes one: the stubs generated from proto/ by grpcio-tools,
a channel to the unix socket with grpcio's defaults.

    python3 -m grpc_tools.protoc -I proto --python_out=OUT --grpc_python_out=OUT \
        proto/isoexec/v1/runtime.proto
    PYTHONPATH=OUT python3 contrib/python/isoexec_client.py [SOCKET]

It runs a task in a sandbox, execs into it, waits for it and removes the
sandbox; it prints what it did and exits with the task's exit code.
"""

import sys

import grpc

from isoexec.v1 import runtime_pb2 as pb
from isoexec.v1 import runtime_pb2_grpc as rpc

SOCKET = sys.argv[1] if len(sys.argv) > 1 else "/run/isoexec/isoexecd.sock"


def main():
    with grpc.insecure_channel(f"unix://{SOCKET}") as channel:
        api = rpc.RuntimeServiceStub(channel)
        v = api.Version(pb.VersionRequest())
        print(f"{v.name} {v.version} ({v.api_version})")
        api.RunSandbox(pb.RunSandboxRequest(id="py"))
        try:
            config = pb.TaskConfig(
                command="/bin/sh",
                args=["-c", "sleep 2; exit 7"],
                env={"GREETING": "hello"},
            )
            task = api.CreateTask(pb.CreateTaskRequest(sandbox_id="py", name="job", config=config)).task
            api.StartTask(pb.StartTaskRequest(task_id=task.id))
            out = api.ExecSync(pb.ExecSyncRequest(task_id=task.id, command=["sh", "-c", "echo $GREETING from $(id -un)"]))
            print(f"exec: {out.stdout.decode().strip()} (exit {out.exit_code})")
            done = api.WaitTask(pb.WaitTaskRequest(task_id=task.id))
            print(f"{task.id} exited {done.exit_code}")
            return done.exit_code
        finally:
            api.RemoveSandbox(pb.RemoveSandboxRequest(id="py", grace_period_seconds=1))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as e:
        print(f"isoexecd: {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(1)
