//! `redis://HOST:PORT/DB` and `redis+cluster://HOST:PORT,HOST:PORT,...`: state in Redis or Redis Cluster.
//!
//! Per schema, with keys hash-tagged so that one schema's keys share a cluster slot:
//! `nf:{SCHEMA}:state` (a hash: encoded key -> 8-byte sequence number and the record's frame),
//! `nf:{SCHEMA}:log` (a stream of the deltas: entry `SEQ-1` holds the frame), and `nf:{SCHEMA}:seq`
//! (the last sequence number). One Lua script per batch assigns sequence numbers and writes hash and stream
//! together, atomically. Watchers read the stream with `XREAD BLOCK` on a connection of their own; one that
//! loses its connection reconnects and resumes from its last sequence number, so nothing is lost or
//! repeated; one that falls behind the stream's trimming gets [`Error::Gap`]. Keyspace notifications and
//! Pub/Sub are not used: they lose what is published while a watcher is away.
//!
//! In a cluster, the hash tag puts a schema's hash, stream and counter in one slot, so the script runs on one
//! node; different schemas spread over the nodes. (Sharding one schema by key range would spread a single
//! schema's load, but would split its sequence numbers; one slot per schema keeps one ordered stream per
//! schema, which is what followers need.)

use super::{SchemaStats, Snapshot, StateStore, StoreStats, Watch};
use crate::error::Error;
use crate::record::{Op, Record};
use crate::schema::BUILT_IN;
use async_trait::async_trait;
use redis::Value;
use std::time::Duration;

/// Stream entries kept per schema (`XADD ... MAXLEN ~`).
const STREAM_MAXLEN: u64 = 1_000_000;

/// Applies a run of records of one schema atomically: sequence numbers, the state hash, the stream.
/// Idempotent per writer: KEYS[4] remembers the writer's last batch (a token over its records, and its
/// sequence numbers); the same batch again (a retry after a lost reply: a cut link, a timeout) returns
/// the numbers it got the first time and applies nothing twice.
const APPLY: &str = r#"
local prev = redis.call('GET', KEYS[4])
if prev then
  local tok, f, l = string.match(prev, '^(%x+):(%d+):(%d+)$')
  if tok == ARGV[2] then
    return {tonumber(f), tonumber(l)}
  end
end
local n = (#ARGV - 2) / 3
local last = redis.call('INCRBY', KEYS[1], n)
local first = last - n + 1
local fields = {}
local function flush()
  if #fields > 0 then
    redis.call('HSET', KEYS[2], unpack(fields))
    fields = {}
  end
end
for idx = 0, n - 1 do
  local i = 3 + idx * 3
  local seq = first + idx
  redis.call('XADD', KEYS[3], string.format('%d-1', seq), 'r', ARGV[i + 2])
  if ARGV[i] == 'u' then
    fields[#fields + 1] = ARGV[i + 1]
    fields[#fields + 1] = struct.pack('>I4I4', math.floor(seq / 4294967296), seq % 4294967296) .. ARGV[i + 2]
    if #fields >= 1000 then flush() end
  else
    -- A delete must follow the sets queued before it (the same key may be among them).
    flush()
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
  end
end
flush()
redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', ARGV[1])
redis.call('SET', KEYS[4], ARGV[2] .. ':' .. string.format('%d', first) .. ':' .. string.format('%d', last))
return {first, last}
"#;

fn keys(schema: &str) -> (String, String, String) {
    (
        format!("nf:{{{schema}}}:seq"),
        format!("nf:{{{schema}}}:state"),
        format!("nf:{{{schema}}}:log"),
    )
}

fn unavailable(e: redis::RedisError) -> Error {
    Error::Unavailable(format!("redis: {e}"))
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A hash value: 8-byte big-endian sequence number, then the frame.
fn decode_state(v: &[u8]) -> Result<Record, Error> {
    if v.len() < 8 {
        return Err(Error::Record(crate::error::RecordError::Truncated {
            need: 8,
            have: v.len(),
        }));
    }
    let seq = u64::from_be_bytes(v[..8].try_into().unwrap_or([0; 8]));
    let (mut r, _) = Record::decode_frame(&v[8..])?;
    r.seq = seq;
    Ok(r)
}

/// A connection to a single Redis or to a cluster.
#[derive(Clone)]
enum Conn {
    Manager(redis::aio::ConnectionManager),
    Mux(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Mux(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Mux(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Mux(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Opens the dedicated connections watchers block on (`XREAD BLOCK` must not hold up the connection
/// that writes: a cluster client's connections are shared by its handles, so each watcher gets a client of
/// its own).
#[derive(Clone)]
enum Opener {
    Single(redis::Client),
    Cluster(Vec<String>),
}

fn cluster_client(urls: &[String]) -> redis::RedisResult<redis::cluster::ClusterClient> {
    redis::cluster::ClusterClient::builder(urls.to_vec())
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(5))
        .build()
}

impl Opener {
    async fn connect(&self) -> redis::RedisResult<Conn> {
        match self {
            Opener::Single(c) => Ok(Conn::Mux(c.get_multiplexed_async_connection().await?)),
            Opener::Cluster(urls) => Ok(Conn::Cluster(
                cluster_client(urls)?.get_async_connection().await?,
            )),
        }
    }
}

/// The store (see the module documentation).
pub struct RedisStore {
    opener: Opener,
    conn: Conn,
    apply: redis::Script,
    url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .finish()
    }
}

impl RedisStore {
    /// Connects to `redis://HOST:PORT/DB`.
    pub async fn open(host: &str, port: u16, db: u32) -> Result<RedisStore, Error> {
        let h = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let url = format!("redis://{h}:{port}/{db}");
        let client = redis::Client::open(url.as_str()).map_err(|e| Error::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(2);
        let conn = redis::aio::ConnectionManager::new_with_config(client.clone(), cfg)
            .await
            .map_err(unavailable)?;
        Ok(RedisStore {
            opener: Opener::Single(client),
            conn: Conn::Manager(conn),
            apply: redis::Script::new(APPLY),
            url,
        })
    }

    /// Connects to a Redis Cluster through any of its nodes.
    pub async fn open_cluster(nodes: &[(String, u16)]) -> Result<RedisStore, Error> {
        let urls: Vec<String> = nodes
            .iter()
            .map(|(h, p)| {
                if h.contains(':') {
                    format!("redis://[{h}]:{p}")
                } else {
                    format!("redis://{h}:{p}")
                }
            })
            .collect();
        let url = format!(
            "redis+cluster://{}",
            nodes
                .iter()
                .map(|(h, p)| format!("{h}:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let client = cluster_client(&urls).map_err(|e| Error::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let conn = client.get_async_connection().await.map_err(unavailable)?;
        Ok(RedisStore {
            opener: Opener::Cluster(urls),
            conn: Conn::Cluster(conn),
            apply: redis::Script::new(APPLY),
            url,
        })
    }
}

async fn watch_loop(
    opener: Opener,
    log: String,
    schema: String,
    from: u64,
    tx: tokio::sync::mpsc::Sender<Result<Record, Error>>,
) {
    let mut last = from;
    let mut conn: Option<Conn> = None;
    let mut backoff = Duration::from_millis(10);
    loop {
        if tx.is_closed() {
            return;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match opener.connect().await {
                Ok(c) => {
                    backoff = Duration::from_millis(10);
                    conn.insert(c)
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let reply: redis::RedisResult<Value> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1024)
            .arg("BLOCK")
            .arg(500)
            .arg("STREAMS")
            .arg(&log)
            .arg(format!("{last}-1"))
            .query_async(c)
            .await;
        let entries = match reply {
            Err(_) => {
                // Connection lost (a restart, a cut link): reconnect and resume from `last`.
                conn = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            Ok(Value::Nil) => continue,
            Ok(v) => v,
        };
        for (id, frame) in stream_entries(&entries) {
            let seq = id;
            if seq != last + 1 {
                let _ = tx
                    .send(Err(Error::Gap {
                        schema: schema.clone(),
                        from: last,
                        oldest: seq,
                    }))
                    .await;
                return;
            }
            let rec = match Record::decode_frame(&frame) {
                Ok((mut r, _)) => {
                    r.seq = seq;
                    Ok(r)
                }
                Err(e) => Err(Error::Record(e)),
            };
            last = seq;
            if tx.send(rec).await.is_err() {
                return;
            }
        }
    }
}

/// The (sequence number, frame) pairs of an `XREAD` reply.
fn stream_entries(v: &Value) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let streams: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Map(m) => m.iter().map(|(_, v)| v).collect(),
        _ => return out,
    };
    for s in streams {
        // RESP2: [name, entries]; RESP3 map values: entries.
        let entries = match s {
            Value::Array(pair) if pair.len() == 2 && bytes_of(&pair[0]).is_some() => &pair[1],
            other => other,
        };
        let Value::Array(entries) = entries else {
            continue;
        };
        for e in entries {
            let Value::Array(e) = e else { continue };
            let (Some(id), Some(Value::Array(fields))) = (e.first().and_then(bytes_of), e.get(1))
            else {
                continue;
            };
            let seq = std::str::from_utf8(id)
                .ok()
                .and_then(|s| s.split('-').next()?.parse::<u64>().ok());
            let frame = fields.get(1).and_then(bytes_of);
            if let (Some(seq), Some(frame)) = (seq, frame) {
                out.push((seq, frame.to_vec()));
            }
        }
    }
    out
}

#[async_trait]
impl StateStore for RedisStore {
    async fn apply(&self, records: Vec<Record>) -> Result<Vec<u64>, Error> {
        let mut seqs = Vec::with_capacity(records.len());
        let mut conn = self.conn.clone();
        let mut i = 0;
        while i < records.len() {
            // One script call per run of records of one schema.
            let schema = records[i].schema.clone();
            let mut j = i;
            let (k_seq, k_state, k_log) = keys(&schema);
            let k_batch = format!("nf:{{{schema}}}:batch:{}", records[i].origin);
            // The run's frames, back to back in one buffer (`ends[k]`: where frame k ends).
            let (mut buf, mut ends) = (Vec::new(), Vec::new());
            while j < records.len() && records[j].schema == schema {
                let mut z = records[j].clone();
                z.seq = 0;
                z.encode_frame(&mut buf)?;
                ends.push(buf.len());
                j += 1;
            }
            // The batch's token: CRC-32C of its frames (hardware CRC, as the record framing uses), the first
            // record's time and the count (a retry sends the very same records).
            let token = crc32c::crc32c(&buf);
            let mut inv = self.apply.prepare_invoke();
            inv.key(&k_seq)
                .key(&k_state)
                .key(&k_log)
                .key(&k_batch)
                .arg(STREAM_MAXLEN)
                .arg(format!("{token:08x}{:016x}{:x}", records[i].time, j - i));
            let mut start = 0;
            for (r, &end) in records[i..j].iter().zip(&ends) {
                inv.arg(if r.op == Op::Upsert { "u" } else { "d" })
                    .arg(&r.key[..])
                    .arg(&buf[start..end]);
                start = end;
            }
            let got: Vec<u64> = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
            match got[..] {
                [first, last] if last + 1 - first == (j - i) as u64 => seqs.extend(first..=last),
                _ => {
                    return Err(Error::Unavailable(format!(
                        "redis: the apply script returned {got:?} for {} records",
                        j - i
                    )));
                }
            }
            i = j;
        }
        Ok(seqs)
    }

    async fn get(&self, schema: &str, key: &[u8]) -> Result<Option<Record>, Error> {
        let (_, k_state, _) = keys(schema);
        let mut conn = self.conn.clone();
        let v: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(&k_state)
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        v.map(|v| decode_state(&v)).transpose()
    }

    async fn scan(&self, schema: &str) -> Result<Snapshot, Error> {
        let (k_seq, k_state, _) = keys(schema);
        // A fuzzy snapshot: the sequence number first, then the hash in chunks (`HGETALL` of a large hash
        // would block the single-threaded server, and every write to it, for as long as the reply takes).
        // Entries changed during the scan may be newer than `seq`; a follower replays the stream from `seq`,
        // and since every record sets or removes one key, the result converges to the exact state. The
        // chunks are read on a connection of their own, so writes sharing `self.conn` do not wait.
        let mut conn = self.opener.connect().await.map_err(unavailable)?;
        let seq: Option<u64> = redis::cmd("GET")
            .arg(&k_seq)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut records = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, items): (u64, Vec<Vec<u8>>) = redis::cmd("HSCAN")
                .arg(&k_state)
                .arg(cursor)
                .arg("COUNT")
                .arg(2000)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for v in items.iter().skip(1).step_by(2) {
                records.push(decode_state(v)?);
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        // HSCAN may return a key twice: keep the newest record of each key.
        records.sort_by(|a, b| a.key.cmp(&b.key).then(b.seq.cmp(&a.seq)));
        records.dedup_by(|a, b| a.key == b.key);
        Ok(Snapshot {
            seq: seq.unwrap_or(0),
            records,
        })
    }

    async fn watch(&self, schema: &str, from_seq: u64) -> Result<Watch, Error> {
        let (_, _, k_log) = keys(schema);
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let task = tokio::spawn(watch_loop(
            self.opener.clone(),
            k_log,
            schema.to_string(),
            from_seq,
            tx,
        ));
        Ok(Watch::new(rx, Some(task)))
    }

    async fn stats(&self) -> Result<StoreStats, Error> {
        let mut conn = self.conn.clone();
        let mut schemas = Vec::new();
        for s in BUILT_IN {
            let (k_seq, k_state, k_log) = keys(s);
            let last: Option<u64> = redis::cmd("GET")
                .arg(&k_seq)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let Some(last) = last else { continue };
            let entries: u64 = redis::cmd("HLEN")
                .arg(&k_state)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let first: Value = redis::cmd("XRANGE")
                .arg(&k_log)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let oldest = stream_entries(&Value::Array(vec![Value::Array(vec![
                Value::BulkString(k_log.into_bytes()),
                first,
            ])]))
            .first()
            .map_or(last, |(s, _)| s.saturating_sub(1));
            schemas.push(SchemaStats {
                schema: s.to_string(),
                entries,
                last_seq: last,
                oldest_retained: oldest,
            });
        }
        Ok(StoreStats {
            schemas,
            counters: Vec::new(),
        })
    }

    fn url(&self) -> String {
        self.url.clone()
    }
}
