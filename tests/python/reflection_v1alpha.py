"""Lists a hub's gRPC services the way Python tools do: grpcio-reflection's v1alpha protocol,
over mutual TLS with a cafectl user's certificate.

Usage: reflection_v1alpha.py HOST:PORT CA CERT KEY
Prints one service name per line, then the files that define cafe.federation.v1.Federation.
"""

import sys

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def main() -> int:
    target, ca, cert, key = sys.argv[1:5]
    with open(ca, "rb") as f:
        root = f.read()
    with open(cert, "rb") as f:
        chain = f.read()
    with open(key, "rb") as f:
        private = f.read()
    credentials = grpc.ssl_channel_credentials(root, private, chain)
    with grpc.secure_channel(target, credentials) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="cafe.federation.v1.Federation"
            ),
        ]
        for response in stub.ServerReflectionInfo(iter(requests), timeout=20):
            if response.HasField("error_response"):
                print(f"error: {response.error_response.error_message}", file=sys.stderr)
                return 1
            if response.HasField("list_services_response"):
                for service in response.list_services_response.service:
                    print(service.name)
            if response.HasField("file_descriptor_response"):
                count = len(response.file_descriptor_response.file_descriptor_proto)
                print(f"files: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
