#!/bin/sh
# Generates TypeScript message types and a @grpc/grpc-js client from
# ../../proto into gen/ with ts-proto, driven by the protoc that ships in
# grpcio-tools (PYTHON names a Python that has it; any protoc works too:
# PROTOC="protoc" ./generate.sh).
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-../../.venv/bin/python}"
PROTOC="${PROTOC:-$PYTHON -m grpc_tools.protoc}"
rm -rf gen
mkdir -p gen
# oneof=unions-value: an Event's payload is { $case: "message", value: Message },
# so `switch (payload.$case)` narrows the type. useDate: Timestamps are Dates.
$PROTOC -I ../../proto \
  --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out=gen \
  --ts_proto_opt=outputServices=grpc-js,env=node,esModuleInterop=true,oneof=unions-value,useDate=true \
  ../../proto/wahook/v1/*.proto
