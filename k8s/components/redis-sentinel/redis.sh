# redis-server of a Sentinel-managed Redis: a replica of the master the Sentinels name, or the
# master itself when they name this pod; on the very first start (no Sentinel answers yet)
# gonets-redis-0 is the master and the others its replicas.
. /scripts/common.sh
master=$(current_master)
if [ -z "$master" ]; then
  master="$FIRST"
fi
set -- --port 6379 --dir /data --appendonly yes --appendfsync everysec --save "" \
  --maxmemory 768mb --maxmemory-policy noeviction \
  --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD" \
  --replica-announce-ip "$SELF"
if [ "$master" != "$SELF" ]; then
  echo "gonets-redis: starting as a replica of $master"
  set -- "$@" --replicaof "$master" 6379
else
  echo "gonets-redis: starting as the master"
fi
exec redis-server "$@"
