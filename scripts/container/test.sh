#!/usr/bin/env bash
# npm run test:container — builds the Dockerfile unchanged with podman and runs the image for real:
# /healthz and /readyz, a POST then GET of a real chart from the simulator (its own container),
# the HEALTHCHECK, a non-root uid, the restricted flags (--cap-drop ALL, no-new-privileges,
# --read-only), SIGTERM -> exit 0 within the stop timeout, and the image size against the base.
# Machines without Docker or a registry: see scripts/container/base-image.sh. Root, Debian 12.
set -euo pipefail
cd "$(dirname "$0")/../.."

NODE_MAJOR=24
BASE="docker.io/library/node:${NODE_MAJOR}-slim"
MAX_GROWTH_BYTES=$((60 * 1000 * 1000)) # the image may add at most 60 MB to its base
STOP_TIMEOUT=15                        # seconds; the service drains for at most 10
id=$$
IMAGE="localhost/kentik-image-cache:test-$id"
SIM_IMAGE="localhost/kentik-simulator:test-$id"
SIM="kic-test-sim-$id"
SVC="kic-test-svc-$id"
VOLUME="kic-test-cache-$id"
work=$(mktemp -d)
started=$(date +%s)
failures=0

step() { printf '== %s (%ss)\n' "$*" $(($(date +%s) - started)); }
pass() { printf '   ok    %s\n' "$*"; }
fail() {
  printf '   FAIL  %s\n' "$*"
  failures=$((failures + 1))
}
check() { # check "<what>" <command...>: passes when the command succeeds
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

cleanup() {
  set +e
  if [ "$failures" -gt 0 ] && podman container exists "$SVC" 2>/dev/null; then
    echo '-- service log (last 30 lines)'
    podman logs --tail 30 "$SVC" 2>&1 | sed 's/^/   /'
  fi
  podman rm -f -t 0 "$SVC" "$SIM" >/dev/null 2>&1
  podman volume rm -f "$VOLUME" >/dev/null 2>&1
  podman rmi -f "$IMAGE" "$SIM_IMAGE" >/dev/null 2>&1
  # Layers of this build nobody uses any more (the base stand-in is kept for the next run).
  podman image prune -f >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

# --- tools --------------------------------------------------------------------------------------
need=()
for tool in podman runc slirp4netns mmdebstrap curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]}"
  [ "$(id -u)" = 0 ] || { echo "need root to install ${need[*]}"; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends podman runc slirp4netns mmdebstrap curl ca-certificates >/dev/null
fi

# podman asks for 1048576 open files unless told; this host allows less without CAP_SYS_RESOURCE.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nofile" -gt 65536 ] && nofile=65536
RUN=(podman run --runtime runc --ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096)
# What Kubernetes' restricted profile imposes, plus a read-only root file system.
RESTRICTED=(--cap-drop ALL --security-opt no-new-privileges --read-only)

# --- base image stand-in ------------------------------------------------------------------------
step "base image $BASE"
bash scripts/container/base-image.sh "$NODE_MAJOR"

# --- build --------------------------------------------------------------------------------------
# npm inside RUN steps must trust what the host's npm trusts (a TLS-inspecting proxy's CA): mount
# the CA bundle and an npmrc naming it into the build steps only; they never enter a layer.
BUILD=(podman build --format docker --isolation chroot --pull=never --ulimit "nofile=$nofile:$nofile")
cafile=$(npm config get cafile 2>/dev/null || true)
[ "$cafile" = null ] || [ "$cafile" = undefined ] && cafile=
[ -z "$cafile" ] && [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && cafile=$NODE_EXTRA_CA_CERTS
if [ -n "$cafile" ] && [ -f "$cafile" ]; then
  printf 'cafile=/usr/local/etc/host-ca.crt\n' >"$work/npmrc"
  BUILD+=(-v "$work/npmrc:/usr/local/etc/npmrc:ro" -v "$cafile:/usr/local/etc/host-ca.crt:ro")
fi
build() { # build <log name> <args...>: the build's output only when it fails
  local log="$work/$1.log"
  shift
  if ! "${BUILD[@]}" "$@" >"$log" 2>&1; then
    tail -40 "$log"
    echo "build failed"
    exit 1
  fi
}
step "building the service image"
build service -t "$IMAGE" .
step "building the simulator image (--target simulator)"
build simulator --target simulator -t "$SIM_IMAGE" .

# --- the image's own properties -----------------------------------------------------------------
step "image"
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(podman image inspect --format '{{.Size}}' "$BASE")
growth=$((size - base_size))
printf '   image %s bytes, base %s bytes: +%s bytes (%s MB, bound %s MB)\n' \
  "$size" "$base_size" "$growth" $((growth / 1000000)) $((MAX_GROWTH_BYTES / 1000000))
check "size within base + 60 MB" test "$growth" -le "$MAX_GROWTH_BYTES"
inspect() { podman image inspect --format "$1" "$IMAGE"; }
check "USER node" test "$(inspect '{{.Config.User}}')" = node
check "HEALTHCHECK present" test -n "$(inspect '{{if .Config.Healthcheck}}{{.Config.Healthcheck.Test}}{{end}}')"
check "STOPSIGNAL SIGTERM" test "$(inspect '{{.Config.StopSignal}}')" = SIGTERM
check "VOLUME /cache" grep -q '/cache' <<<"$(inspect '{{.Config.Volumes}}')"
check "EXPOSE 8080" grep -q '8080' <<<"$(inspect '{{.Config.ExposedPorts}}')"
contents=$(podman run --rm --runtime runc --ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096 \
  --network none --no-healthcheck --entrypoint sh "$IMAGE" -c \
  'cd /app && find . -path ./node_modules -prune -o -type f -print; ls node_modules;
   find /app /usr/local/etc /root /home -xdev \( -name "*.map" -o -name ".npmrc" -o -name npmrc -o -name "host-ca*" \) 2>/dev/null; true')
check "no tests, demo or source maps in /app" test -z "$(grep -E '\.test\.|\.contract\.|demo\.js|\.map$' <<<"$contents")"
check "no simulator, chart or canvas packages" test -z "$(grep -E '^(kentik-simulator|chart\.js|@napi-rs|@fontsource)$' <<<"$contents")"
check "no dev dependencies (typescript, vitest, tsx, esbuild)" test -z "$(grep -E '^(typescript|vitest|tsx|esbuild|@types)$' <<<"$contents")"
check "no host npm configuration or CA file" test -z "$(grep -E 'npmrc|host-ca' <<<"$contents")"

# --- run -----------------------------------------------------------------------------------------
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
token="ct-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# The upstream: the simulator in its own network namespace (slirp4netns: no host firewall
# changes); the service joins that namespace, so Kentik is http://127.0.0.1:9100 for it.
step "starting the simulator and the service (restricted flags)"
"${RUN[@]}" -d --name "$SIM" --network slirp4netns -p "127.0.0.1:$port:8080" "${RESTRICTED[@]}" \
  -e KT_AUTH_EMAIL=ci@example.com -e KT_AUTH_TOKEN="$token" -e SIM_QUIET=1 "$SIM_IMAGE" >/dev/null
cat >"$work/.env" <<ENV
KT_AUTH_EMAIL=ci@example.com
KT_AUTH_TOKEN=$token
KENTIK_API_URL=http://127.0.0.1:9100/api/v5
ENV
podman volume create "$VOLUME" >/dev/null
"${RUN[@]}" -d --name "$SVC" --network "container:$SIM" "${RESTRICTED[@]}" --tmpfs /tmp \
  -v "$VOLUME:/cache" --env-file "$work/.env" "$IMAGE" >/dev/null

url="http://127.0.0.1:$port"
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }
for _ in $(seq 1 100); do
  [ "$(status "$url/readyz")" = 200 ] && break
  [ "$(podman inspect --format '{{.State.Running}}' "$SVC")" = true ] || break
  sleep 0.2
done
check "/healthz 200" test "$(status "$url/healthz")" = 200
check "/readyz 200" test "$(status "$url/readyz")" = 200

step "POST then GET a chart"
body=$(curl -s --max-time 10 -H 'content-type: application/json' \
  --data-binary @examples/queries/01-total-traffic-png.json "$url/requests" || true)
image_id=$(node -e 'try{const j=JSON.parse(process.argv[1]);console.log(j.id??"")}catch{console.log("")}' "$body")
check "POST /requests gives an id" grep -Eq '^[0-9a-f]{64}_[0-9.]+$' <<<"$image_id"
headers=$(curl -s --max-time 60 -D - -o "$work/chart" "$url/image/$image_id" || true)
check "GET /image/{id} 200 image/png" grep -Eiq '^content-type: image/png' <<<"$headers"
check "a real PNG chart from the simulator (> 10 kB)" \
  test "$(head -c 8 "$work/chart" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a -a "$(stat -c %s "$work/chart")" -gt 10000

step "process"
proc=$(podman exec "$SVC" cat /proc/1/status)
check "runs as a non-root uid (1000)" grep -Eq '^Uid:\s+1000\s' <<<"$proc"
check "no capabilities" grep -Eq '^CapEff:\s+0+$' <<<"$proc"
check "no_new_privs set" grep -Eq '^NoNewPrivs:\s+1$' <<<"$proc"
check "root file system read-only" bash -c "! podman exec '$SVC' touch /app/probe 2>/dev/null"
check "HEALTHCHECK reports healthy" podman healthcheck run "$SVC"
check "health status healthy" test "$(podman inspect --format '{{.State.Health.Status}}' "$SVC" 2>/dev/null \
  || podman inspect --format '{{.State.Healthcheck.Status}}' "$SVC")" = healthy

step "SIGTERM"
t0=$(date +%s%N)
podman stop -t "$STOP_TIMEOUT" "$SVC" >/dev/null
elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
code=$(podman inspect --format '{{.State.ExitCode}}' "$SVC")
printf '   stopped in %s ms, exit code %s\n' "$elapsed_ms" "$code"
check "exit code 0" test "$code" = 0
check "within the stop timeout (${STOP_TIMEOUT} s)" test "$elapsed_ms" -lt $((STOP_TIMEOUT * 1000))
check "the token is in no log line" bash -c "! podman logs '$SVC' 2>&1 | grep -qF '$token'"

step "done: $failures failed"
[ "$failures" = 0 ]
