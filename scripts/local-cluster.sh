#!/usr/bin/env bash
# A real cluster on this machine: Redis (membership, job records, reminders), Azurite (the blob
# artifact store) and N influence-silo processes, all on loopback.
#
#   scripts/local-cluster.sh up [N]     start (N silos, default 3); prints the client's settings
#   scripts/local-cluster.sh add        one more silo
#   scripts/local-cluster.sh down       stop everything (silos gracefully)
#
# State, logs and data live in .cluster/. Needs a Release build (dotnet build -c Release) and
# the tools of scripts/install-test-tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
state="$root/.cluster"
bin="$root/src/Silo/bin/Release/net10.0"
redis_port=${REDIS_PORT:-6380}
blob_port=${BLOB_PORT:-10000}
container=influence
key="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
connection="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$key;BlobEndpoint=http://127.0.0.1:$blob_port/devstoreaccount1;"

wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; echo "error: nothing listens on port $1 ($2); see $state/$2.log" >&2; return 1; }

start_silo() {
  local k=$1
  dotnet "$bin/influence-silo.dll" \
    --Cluster:Clustering=redis --Cluster:Redis=127.0.0.1:$redis_port --Cluster:AdvertisedIP=127.0.0.1 \
    --Cluster:SiloPort=$((11111 + k)) --Cluster:GatewayPort=$((30000 + k)) --Cluster:SiloName=silo-$k \
    --Cluster:FailureDetection=fast --Compute:TorchThreads=${TORCH_THREADS:-1} --Compute:ConcurrentTasks=${CONCURRENT_TASKS:-1} \
    --Store:Kind=blob "--Store:ConnectionString=$connection" --Store:Container=$container \
    --Metrics:Port=$((9400 + k)) > "$state/silo-$k.log" 2>&1 &
  echo $! > "$state/silo-$k.pid"
  wait_port $((30000 + k)) "silo-$k"
  echo "silo-$k: silo port $((11111 + k)), gateway $((30000 + k)), metrics http://127.0.0.1:$((9400 + k))/metrics"
}

case "${1:-}" in
  up)
    n=${2:-3}
    [ -f "$bin/influence-silo.dll" ] || { echo "error: build first: dotnet build Influence.sln -c Release" >&2; exit 1; }
    # A cluster already up (its pid files name live processes) is not started twice: the second
    # Redis and silos would fail on their ports and leave pid files that 'down' cannot match.
    for f in "$state"/*.pid; do
      [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && { echo "error: a cluster is already running ($(basename "$f" .pid), pid $(cat "$f")); run '$0 down' first" >&2; exit 1; }
    done
    rm -f "$state"/*.pid
    mkdir -p "$state/redis" "$state/azurite"
    redis-server --port $redis_port --bind 127.0.0.1 --save "" --dir "$state/redis" > "$state/redis.log" 2>&1 &
    echo $! > "$state/redis.pid"
    "$root/.tools/bin/azurite-blob" --blobHost 127.0.0.1 --blobPort $blob_port --location "$state/azurite" --silent --skipApiVersionCheck --loose > "$state/azurite.log" 2>&1 &
    echo $! > "$state/azurite.pid"
    wait_port $redis_port redis
    wait_port $blob_port azurite
    # The container must exist before the silos start (they check it and refuse to run without it).
    INFLUENCE_BLOB_CONNECTION_STRING="$connection" dotnet "$root/src/Client/bin/Release/net10.0/influence.dll" store create --store azblob:$container
    for k in $(seq 0 $((n - 1))); do start_silo $k; done
    cat <<MSG

Client settings for this cluster:
  export INFLUENCE_BLOB_CONNECTION_STRING='$connection'
  influence cluster status --cluster redis://127.0.0.1:$redis_port
  influence loo ... --cluster redis://127.0.0.1:$redis_port --store azblob:$container
MSG
    ;;
  add)
    k=$(ls "$state"/silo-*.pid 2>/dev/null | wc -l)
    start_silo "$k"
    ;;
  down)
    pids=()
    for f in "$state"/silo-*.pid; do [ -f "$f" ] && { pids+=("$(cat "$f")"); kill -TERM "${pids[-1]}" 2>/dev/null || true; }; rm -f "$f"; done
    # Redis must outlive the silos' graceful stop (they leave the membership table through it);
    # a silo still stopping after 60 s is killed.
    for pid in "${pids[@]}"; do
      for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
    done
    for s in redis azurite; do [ -f "$state/$s.pid" ] && kill "$(cat "$state/$s.pid")" 2>/dev/null || true; rm -f "$state/$s.pid"; done
    echo "stopped"
    ;;
  *)
    sed -n '2,10p' "$0"; exit 2 ;;
esac
