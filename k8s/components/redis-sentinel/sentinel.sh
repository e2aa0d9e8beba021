# A Sentinel beside each redis-server: watches the master named `gonets` (a quorum of 2 of the
# 3 Sentinels agree it is down before a replica is promoted).  Its file is rewritten by the
# Sentinel itself as it learns; it starts from the master the other Sentinels know.
. /scripts/common.sh
master=$(current_master)
if [ -z "$master" ]; then
  master="$FIRST"
fi
conf=/tmp/sentinel.conf
cat > "$conf" <<CONF
port 26379
dir /tmp
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $SELF
sentinel monitor $MASTER_NAME $master 6379 2
sentinel auth-pass $MASTER_NAME $REDIS_PASSWORD
sentinel down-after-milliseconds $MASTER_NAME 5000
sentinel failover-timeout $MASTER_NAME 60000
sentinel parallel-syncs $MASTER_NAME 1
CONF
echo "gonets-redis sentinel: watching $master"
exec redis-server "$conf" --sentinel
