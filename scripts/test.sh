#!/usr/bin/env bash
# The project's test command: installs and builds what the tests need, checks formatting and lints,
# runs every test of the workspace on cafe-sim, then runs the tests that matter again with every
# member cluster on a real control plane (etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler built from their Go modules, with simulated nodes). `.ci/run` calls exactly this.
#
# CAFE_TEST_BACKENDS="sim" skips the second pass on real control planes (for a quick local run); the
# default is "sim kube". etcd is built either way: the replicated hub's tests need it.
set -euo pipefail
cd "$(dirname "$0")/.."
backends="${CAFE_TEST_BACKENDS:-sim kube}"

# kubectl: the cafe-sim tests drive `kubectl` against a simulated cluster.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "installing kubectl (Debian's kubernetes-client)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi

# Prometheus: the release-analysis tests gate groups on a real server (Debian's package).
if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing prometheus (Debian's prometheus)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# The console's browser test: Debian's Chromium, driven by playwright-core from npm (cached outside
# the clone, keyed by version). playwright-core never downloads a browser of its own.
if [[ ! -x /usr/bin/chromium ]]; then
  echo "installing chromium (Debian's chromium)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
playwright_version="1.64.1"
CAFE_PLAYWRIGHT="${XDG_CACHE_HOME:-$HOME/.cache}/cafe-federation/node-playwright-core-$playwright_version"
if [[ ! -f "$CAFE_PLAYWRIGHT/node_modules/playwright-core/package.json" ]]; then
  echo "installing playwright-core@$playwright_version into $CAFE_PLAYWRIGHT"
  rm -rf "$CAFE_PLAYWRIGHT"
  mkdir -p "$CAFE_PLAYWRIGHT"
  npm install --prefix "$CAFE_PLAYWRIGHT" --no-audit --no-fund --silent "playwright-core@$playwright_version"
fi
export CAFE_NODE_MODULES="$CAFE_PLAYWRIGHT/node_modules"

# Python's gRPC client (grpcio, grpcio-reflection from PyPI) in a virtualenv cached outside the
# clone, keyed by version: a test lists the hub's services with it by reflection v1alpha.
python_grpc="grpcio==1.85.3 grpcio-reflection==1.85.1"
CAFE_PYTHON_GRPC="${XDG_CACHE_HOME:-$HOME/.cache}/cafe-federation/python-grpcio-1.85.3"
if [[ ! -x "$CAFE_PYTHON_GRPC/bin/python" ]] || ! "$CAFE_PYTHON_GRPC/bin/python" -c "import grpc_reflection" 2>/dev/null; then
  echo "installing $python_grpc into $CAFE_PYTHON_GRPC"
  rm -rf "$CAFE_PYTHON_GRPC"
  python3 -m venv "$CAFE_PYTHON_GRPC"
  # shellcheck disable=SC2086 # the requirement list is split on purpose
  "$CAFE_PYTHON_GRPC/bin/pip" install -q $python_grpc
fi
export CAFE_PYTHON="$CAFE_PYTHON_GRPC/bin/python"

# The control plane: built once from Go modules and cached outside the clone, keyed by version.
# Always: its etcd also runs the replicated hub's tests (three etcd members, three hub replicas).
CAFE_CONTROL_PLANE_BIN="$(scripts/control-plane.sh build)"
export CAFE_CONTROL_PLANE_BIN
# A test binary that dies (a timeout, a signal) cannot kill the control planes it started; no
# component may outlive this script, stopped (SIGSTOP) ones included.
cleanup() { pkill -KILL -f "^$CAFE_CONTROL_PLANE_BIN/" 2>/dev/null || true; }
trap cleanup EXIT

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
CAFE_CLUSTERS=sim cargo test --workspace --locked

if [[ " $backends " == *" kube "* ]]; then
  echo "== the same tests on real control planes (CAFE_CLUSTERS=kube)"
  export CAFE_CLUSTERS=kube
  # One test at a time: each starts its own control planes (an end-to-end test four of them), and
  # two cores run them with the hub, the agents and the simulated nodes.
  # What cafe-sim must share with a real cluster: its kubelet and load balancers against one.
  cargo test --locked -p cafe-sim --test kubelet --test traffic -- --test-threads=1
  # The agent with its ServiceAccount and the shipped RBAC.
  cargo test --locked -p cafe-member-agent --test rollout --test failure --test restart \
    --test process --test deploy -- --test-threads=1
  # End to end: hub, agents and four member clusters.
  cargo test --locked -p cafe-tests --test release --test restarts --test failover --test security --test install \
    --test rbac --test agent_ha --test pipeline --test blue_green -- --test-threads=1
fi
