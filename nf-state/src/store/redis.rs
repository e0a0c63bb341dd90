//! `redis://HOST:PORT/DB` and `redis+cluster://HOST:PORT,HOST:PORT,...`: state in Redis or Redis Cluster.
//!
//! Per schema, with keys hash-tagged so that one schema's keys share a cluster slot:
//! `nf:{SCHEMA}:state` (a hash: encoded key -> 8-byte big-endian sequence number and the record's frame),
//! `nf:{SCHEMA}:log` (a stream of the deltas: one entry per batch, ID `FIRST-COUNT`, whose fields are the
//! batch's keys and hash values in order, so each record carries its own sequence number), and
//! `nf:{SCHEMA}:seq` (the last sequence number). One Lua script per batch (of up to 2,048 records) assigns
//! sequence numbers and writes hash and stream together, atomically. A writer alone on its schema sends
//! the values already numbered (it predicts the numbers it will get; the script checks, and renumbers when
//! another writer came in between), so the script does no work per record: Redis's Lua hashes every byte
//! of every string a script makes, and that, not the commands, was the cost. Watchers read the stream with `XREAD BLOCK` on a connection of their own; one that
//! loses its connection reconnects and resumes from its last sequence number, so nothing is lost or
//! repeated; one that falls behind the stream's trimming gets [`Error::Gap`]; one that finds the
//! schema's counter below what it has read (after each reconnection and each idle half second: a replica
//! promoted without its failed master's last writes) gets [`Error::Rewound`]. Keyspace notifications and
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

/// Records the stream keeps per schema, at least (`XTRIM ... MINID ~`: whole entries older than the last
/// sequence number minus this are trimmed).
const STREAM_KEEP: u64 = 1_000_000;

/// Records per script call: the script hands each record's key and value to `XADD` in one `unpack`, which
/// Lua limits to 8,000 values.
const MAX_PER_CALL: usize = 2048;

/// Applies a run of records of one schema atomically: sequence numbers, the state hash, the stream.
///
/// `ARGV`: the records to keep in the stream, the batch token, the first sequence number the writer
/// predicts, the ops (one `u` or `d` per record), then per record its key and its hash value (8-byte
/// big-endian sequence number, then the frame). A writer alone on its schema predicts right and its values
/// go to the hash as they came (one `HSET` per thousand values, no Lua work per record); otherwise the script
/// rewrites each value's sequence number. The stream gets one entry per batch, `FIRST-COUNT`, whose field
/// `b` holds the batch's hash values back to back (each self-delimiting: sequence number, framed record).
///
/// Idempotent per writer: KEYS[4] remembers the writer's last 64 batches (a token over the records of each,
/// and its sequence numbers); a batch seen again (a retry after a lost reply: a cut link, a timeout)
/// returns the numbers it got the first time and applies nothing twice.
const APPLY: &str = r#"
for _, prev in ipairs(redis.call('LRANGE', KEYS[4], 0, 63)) do
  local tok, f, l = string.match(prev, '^(%x+):(%d+):(%d+)$')
  if tok == ARGV[2] then
    return {tonumber(f), tonumber(l)}
  end
end
local ops = ARGV[4]
local n = #ops
if n == 0 or #ARGV ~= 4 + 2 * n then
  return redis.error_reply('nf apply: ' .. #ARGV .. ' arguments for ' .. n .. ' records')
end
local last = redis.call('INCRBY', KEYS[1], n)
local first = last - n + 1
local id = string.format('%d-%d', first, n)
if first == tonumber(ARGV[3]) and not string.find(ops, 'd', 1, true) then
  local top = 4 + 2 * n
  local s = 5
  while s <= top do
    local e = math.min(s + 999, top)
    redis.call('HSET', KEYS[2], unpack(ARGV, s, e))
    s = e + 1
  end
  redis.call('XADD', KEYS[3], id, unpack(ARGV, 5, top))
else
  local fields, xs = {}, {}
  local function flush()
    if #fields > 0 then
      redis.call('HSET', KEYS[2], unpack(fields))
      fields = {}
    end
  end
  for idx = 1, n do
    local seq = first + idx - 1
    local k = ARGV[3 + 2 * idx]
    local v = struct.pack('>I4I4', math.floor(seq / 4294967296), seq % 4294967296) .. string.sub(ARGV[4 + 2 * idx], 9)
    xs[2 * idx - 1] = k
    xs[2 * idx] = v
    if string.byte(ops, idx) == 117 then
      fields[#fields + 1] = k
      fields[#fields + 1] = v
      if #fields >= 1000 then flush() end
    else
      -- A delete must follow the sets queued before it (the same key may be among them).
      flush()
      redis.call('HDEL', KEYS[2], k)
    end
  end
  flush()
  redis.call('XADD', KEYS[3], id, unpack(xs))
end
local keep = tonumber(ARGV[1])
if last > keep then
  redis.call('XTRIM', KEYS[3], 'MINID', '~', string.format('%d', last - keep))
end
redis.call('LPUSH', KEYS[4], ARGV[2] .. ':' .. string.format('%d', first) .. ':' .. string.format('%d', last))
redis.call('LTRIM', KEYS[4], 0, 63)
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

/// A hash value (and each record of a stream batch): 8-byte big-endian sequence number, then the frame.
/// Returns the record and the bytes it took.
fn decode_state(v: &[u8]) -> Result<(Record, usize), Error> {
    let Some((seq, frame)) = v.split_first_chunk::<8>() else {
        return Err(Error::Record(crate::error::RecordError::Truncated {
            need: 8,
            have: v.len(),
        }));
    };
    let (mut r, used) = Record::decode_frame(frame)?;
    r.seq = u64::from_be_bytes(*seq);
    Ok((r, 8 + used))
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
    /// Per schema, the sequence number this writer expects its next record to get (the last it got, plus
    /// one). Right while it writes alone, which lets the script take its values as they are.
    next_seq: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .finish()
    }
}

impl RedisStore {
    /// The sequence number the next record of `schema` is expected to get (0: no idea).
    fn predicted(&self, schema: &str) -> u64 {
        let m = self.next_seq.lock().unwrap_or_else(|e| e.into_inner());
        m.get(schema).copied().unwrap_or(0)
    }

    fn predict(&self, schema: &str, next: u64) {
        let mut m = self.next_seq.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(schema) {
            Some(v) => *v = next,
            None => {
                m.insert(schema.to_string(), next);
            }
        }
    }

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
            next_seq: Default::default(),
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
            next_seq: Default::default(),
        })
    }
}

/// A stream entry's ID, `FIRST-COUNT` (`SEQ-1` for a single record).
type EntryId = (u64, u64);

/// The stream ID just below `id` (`XREAD` reads after the ID it is given).
fn id_before((ms, sub): EntryId) -> EntryId {
    if sub > 0 {
        (ms, sub - 1)
    } else {
        (ms.saturating_sub(1), u64::MAX)
    }
}

fn parse_id(b: &[u8]) -> Option<EntryId> {
    let (ms, sub) = std::str::from_utf8(b).ok()?.split_once('-')?;
    Some((ms.parse().ok()?, sub.parse().ok()?))
}

/// The entries of an `XRANGE`/`XREVRANGE` reply (or of one stream of an `XREAD` reply): ID and fields.
fn range_entries(v: &Value) -> Vec<(EntryId, &[Value])> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let Value::Array(e) = e else { return None };
            let id = parse_id(e.first().and_then(bytes_of)?)?;
            let Some(Value::Array(fields)) = e.get(1) else {
                return None;
            };
            Some((id, &fields[..]))
        })
        .collect()
}

/// The entries of an `XREAD` reply.
fn read_entries(v: &Value) -> Vec<(EntryId, &[Value])> {
    let streams: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Map(m) => m.iter().map(|(_, v)| v).collect(),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for s in streams {
        // RESP2: [name, entries]; RESP3 map values: entries.
        let entries = match s {
            Value::Array(pair) if pair.len() == 2 && bytes_of(&pair[0]).is_some() => &pair[1],
            other => other,
        };
        out.extend(range_entries(entries));
    }
    out
}

/// The records of one stream entry, in order. An entry `FIRST-COUNT` holds per record its key and its hash
/// value (8-byte big-endian sequence number, then the frame); an entry of the earlier layout, `SEQ-1`, one
/// field `r` with a bare frame. A corrupt value yields an error in its place.
fn entry_records(id: EntryId, fields: &[Value], out: &mut Vec<(u64, Result<Record, Error>)>) {
    if let [name, body] = fields
        && let (Some(b"r"), Some(body)) = (bytes_of(name), bytes_of(body))
        && let Ok((mut r, _)) = Record::decode_frame(body)
    {
        r.seq = id.0;
        out.push((id.0, Ok(r)));
        return;
    }
    for (k, pair) in fields.chunks(2).enumerate() {
        // Where the sequence number cannot be read, the entry's own numbering tells it.
        let seq = id.0.saturating_add(k as u64);
        let rec = match pair.get(1).and_then(bytes_of) {
            Some(v) => decode_state(v).map(|(r, _)| r),
            None => Err(Error::Record(crate::error::RecordError::Truncated {
                need: 8,
                have: 0,
            })),
        };
        out.push((rec.as_ref().map_or(seq, |r| r.seq), rec));
    }
}

async fn watch_loop(
    opener: Opener,
    (seq_key, log): (String, String),
    schema: String,
    from: u64,
    tx: tokio::sync::mpsc::Sender<Result<Record, Error>>,
) {
    let mut last = from;
    // Whether the store's counter must be checked against `last` (after each new connection and
    // each idle read): a failover to a replica that missed the last writes rewinds it, and new records
    // would then reuse numbers this watcher has already passed, silently.
    let mut check = true;
    // Where to read from (exclusive); `None` until the entry holding `from + 1` has been found.
    let mut cursor: Option<EntryId> = None;
    let mut conn: Option<Conn> = None;
    let mut backoff = Duration::from_millis(10);
    let mut records = Vec::new();
    loop {
        if tx.is_closed() {
            return;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match opener.connect().await {
                Ok(c) => {
                    backoff = Duration::from_millis(10);
                    check = true;
                    conn.insert(c)
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        if check && last > 0 {
            let now: redis::RedisResult<Option<u64>> =
                redis::cmd("GET").arg(&seq_key).query_async(c).await;
            match now {
                Ok(now) if now.unwrap_or(0) < last => {
                    let _ = tx
                        .send(Err(Error::Rewound {
                            schema: schema.clone(),
                            had: last,
                            now: now.unwrap_or(0),
                        }))
                        .await;
                    return;
                }
                Ok(_) => check = false,
                Err(_) => {
                    conn = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            }
        }
        let at = match cursor {
            Some(at) => at,
            None => {
                // The last entry starting at or before `from + 1` holds it (or the stream starts later).
                let reply: redis::RedisResult<Value> = redis::cmd("XREVRANGE")
                    .arg(&log)
                    .arg(format!("{}-{}", last.saturating_add(1), u64::MAX))
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(c)
                    .await;
                match reply {
                    Ok(v) => {
                        let at = range_entries(&v)
                            .first()
                            .map_or((0, 0), |&(id, _)| id_before(id));
                        *cursor.insert(at)
                    }
                    Err(_) => {
                        conn = None;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                }
            }
        };
        let reply: redis::RedisResult<Value> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(64)
            .arg("BLOCK")
            .arg(500)
            .arg("STREAMS")
            .arg(&log)
            .arg(format!("{}-{}", at.0, at.1))
            .query_async(c)
            .await;
        let entries = match reply {
            Err(_) => {
                // Connection lost (a restart, a cut link): reconnect and resume after `cursor`.
                conn = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            Ok(Value::Nil) => {
                check = true;
                continue;
            }
            Ok(v) => v,
        };
        for (id, fields) in read_entries(&entries) {
            cursor = Some(id);
            records.clear();
            entry_records(id, fields, &mut records);
            for (seq, rec) in records.drain(..) {
                if seq <= last {
                    continue;
                }
                if seq != last + 1 && rec.is_ok() {
                    let _ = tx
                        .send(Err(Error::Gap {
                            schema: schema.clone(),
                            from: last,
                            oldest: seq,
                        }))
                        .await;
                    return;
                }
                last = seq;
                if tx.send(rec).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[async_trait]
impl StateStore for RedisStore {
    async fn apply(&self, records: Vec<Record>) -> Result<Vec<u64>, Error> {
        let mut seqs = Vec::with_capacity(records.len());
        let mut conn = self.conn.clone();
        let mut i = 0;
        while i < records.len() {
            // One script call per run of records of one schema (up to MAX_PER_CALL records).
            let schema = &records[i].schema;
            let mut j = i;
            let (k_seq, k_state, k_log) = keys(schema);
            let k_batch = format!("nf:{{{schema}}}:batches:{}", records[i].origin);
            let predicted = self.predicted(schema);
            // The run's hash values back to back in one buffer (`ends[k]`: where value k ends): the
            // predicted sequence number, then the frame (with sequence number 0, so that a retry, whatever
            // its prediction, carries the same frames).
            let (mut buf, mut ends, mut ops) = (Vec::new(), Vec::new(), String::new());
            // The batch's token: CRC-32C of its frames (hardware CRC, as the record framing uses), the first
            // record's time and the count (a retry sends the very same records).
            let mut token = 0u32;
            while j < records.len() && records[j].schema == *schema && j - i < MAX_PER_CALL {
                let r = &records[j];
                let seq = if predicted == 0 {
                    0
                } else {
                    predicted + (j - i) as u64
                };
                buf.extend_from_slice(&seq.to_be_bytes());
                let frame = buf.len();
                r.encode_frame_seq(0, &mut buf)?;
                token = crc32c::crc32c_append(token, &buf[frame..]);
                ends.push(buf.len());
                ops.push(if r.op == Op::Upsert { 'u' } else { 'd' });
                j += 1;
            }
            // EVALSHA built as one command (its arguments in one buffer; a script invocation would
            // allocate one vector per argument).
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(self.apply.get_hash())
                .arg(4)
                .arg(&k_seq)
                .arg(&k_state)
                .arg(&k_log)
                .arg(&k_batch)
                .arg(STREAM_KEEP)
                .arg(format!("{token:08x}{:016x}{:x}", records[i].time, j - i))
                .arg(predicted)
                .arg(&ops);
            let mut start = 0;
            for (r, &end) in records[i..j].iter().zip(&ends) {
                cmd.arg(&r.key[..]).arg(&buf[start..end]);
                start = end;
            }
            let got: Vec<u64> = match cmd.query_async(&mut conn).await {
                Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                    // A server that has not seen the script yet (or was restarted): load it, once.
                    redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(APPLY)
                        .query_async::<()>(&mut conn)
                        .await
                        .map_err(unavailable)?;
                    cmd.query_async(&mut conn).await.map_err(unavailable)?
                }
                r => r.map_err(unavailable)?,
            };
            match got[..] {
                [first, last]
                    if last.checked_add(1).and_then(|l| l.checked_sub(first))
                        == Some((j - i) as u64) =>
                {
                    seqs.extend(first..=last);
                    self.predict(schema, last + 1);
                }
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
        v.map(|v| decode_state(&v).map(|(r, _)| r)).transpose()
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
                records.push(decode_state(v)?.0);
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
        let (k_seq, _, k_log) = keys(schema);
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let task = tokio::spawn(watch_loop(
            self.opener.clone(),
            (k_seq, k_log),
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
            let oldest = range_entries(&first)
                .first()
                .map_or(last, |&((s, _), _)| s.saturating_sub(1));
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
