//! The few protobuf messages runnerx reads from a BuildKit node (its `ListWorkers`
//! and `Info` answers), decoded by hand: a wire-format walker over length-delimited
//! fields. Field numbers are BuildKit's `api/types/worker.proto`, `solver/pb/ops.proto`
//! (`Platform`) and `api/services/control/control.proto` (`InfoResponse`); unknown
//! fields are skipped, as protobuf requires.

/// One worker of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Worker {
    /// Platforms it builds, `os/arch[/variant]` (emulated ones included).
    pub platforms: Vec<String>,
    /// BuildKit version it reports (`v0.13.2`), if any.
    pub version: Option<String>,
}

/// Wire types of the protobuf encoding.
const VARINT: u64 = 0;
const I64: u64 = 1;
const LEN: u64 = 2;
const I32: u64 = 5;

fn varint(buf: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at).ok_or("truncated varint")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// The length-delimited fields of a message, as (field number, bytes); other wire
/// types are skipped.
fn fields(buf: &[u8]) -> Result<Vec<(u64, &[u8])>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let tag = varint(buf, &mut at)?;
        let skip = match tag & 7 {
            VARINT => {
                varint(buf, &mut at)?;
                0
            }
            I64 => 8,
            I32 => 4,
            LEN => {
                let len = usize::try_from(varint(buf, &mut at)?).map_err(|e| e.to_string())?;
                let end = at.checked_add(len).filter(|e| *e <= buf.len());
                let end = end.ok_or("field runs past the message")?;
                out.push((tag >> 3, &buf[at..end]));
                end - at
            }
            t => return Err(format!("unsupported wire type {t}")),
        };
        at += skip;
        if at > buf.len() {
            return Err("field runs past the message".into());
        }
    }
    Ok(out)
}

fn string(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string field is not UTF-8".to_string())
}

/// `BuildkitVersion.version` (field 2).
fn version(buf: &[u8]) -> Result<Option<String>, String> {
    for (n, b) in fields(buf)? {
        if n == 2 && !b.is_empty() {
            return Ok(Some(string(b)?));
        }
    }
    Ok(None)
}

/// `pb.Platform`: Architecture = 1, OS = 2, Variant = 3.
fn platform(buf: &[u8]) -> Result<String, String> {
    let (mut arch, mut os, mut variant) = (String::new(), String::new(), String::new());
    for (n, b) in fields(buf)? {
        match n {
            1 => arch = string(b)?,
            2 => os = string(b)?,
            3 => variant = string(b)?,
            _ => {}
        }
    }
    Ok(if variant.is_empty() {
        format!("{os}/{arch}")
    } else {
        format!("{os}/{arch}/{variant}")
    })
}

/// `ListWorkersResponse { repeated WorkerRecord record = 1 }`, with
/// `WorkerRecord { platforms = 3, BuildkitVersion = 5 }`.
pub(super) fn list_workers(buf: &[u8]) -> Result<Vec<Worker>, String> {
    let mut workers = Vec::new();
    for (n, record) in fields(buf)? {
        if n != 1 {
            continue;
        }
        let mut w = Worker::default();
        for (m, b) in fields(record)? {
            match m {
                3 => w.platforms.push(platform(b)?),
                5 => w.version = version(b)?,
                _ => {}
            }
        }
        workers.push(w);
    }
    Ok(workers)
}

/// `InfoResponse { BuildkitVersion buildkitVersion = 1 }`.
pub(super) fn info_version(buf: &[u8]) -> Result<Option<String>, String> {
    for (n, b) in fields(buf)? {
        if n == 1 {
            return version(b);
        }
    }
    Ok(None)
}

/// The messages of a gRPC body: 1-byte compressed flag, 4-byte big-endian length.
pub(super) fn grpc_messages(body: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let head = body.get(at..at + 5).ok_or("truncated gRPC frame")?;
        if head[0] != 0 {
            return Err("compressed gRPC message (not requested)".into());
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let msg = body
            .get(at + 5..at + 5 + len)
            .ok_or("truncated gRPC message")?;
        out.push(msg);
        at += 5 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(n: u64, body: &[u8]) -> Vec<u8> {
        let mut v = vec![
            u8::try_from((n << 3) | LEN).unwrap(),
            u8::try_from(body.len()).unwrap(),
        ];
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn decodes_a_list_workers_answer() {
        let arm = [len_field(1, b"arm64"), len_field(2, b"linux")].concat();
        let arm7 = [
            len_field(1, b"arm"),
            len_field(2, b"linux"),
            len_field(3, b"v7"),
        ]
        .concat();
        let version = [
            len_field(1, b"github.com/moby/buildkit"),
            len_field(2, b"v0.13.2"),
        ]
        .concat();
        let record = [
            len_field(1, b"w1"),
            vec![0x20, 0x05], // a varint field (4) to skip
            len_field(3, &arm),
            len_field(3, &arm7),
            len_field(5, &version),
        ]
        .concat();
        let workers = list_workers(&len_field(1, &record)).unwrap();
        assert_eq!(
            workers,
            vec![Worker {
                platforms: vec!["linux/arm64".into(), "linux/arm/v7".into()],
                version: Some("v0.13.2".into()),
            }]
        );
        assert_eq!(
            info_version(&len_field(1, &version)).unwrap(),
            Some("v0.13.2".into())
        );
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        assert!(list_workers(&[0x0a, 0x09, 0x01]).is_err());
        assert!(list_workers(&[0x0b]).is_err());
        assert!(grpc_messages(&[0, 0, 0, 0, 9, 1]).is_err());
        let framed = [vec![0, 0, 0, 0, 2], vec![0x08, 0x01]].concat();
        assert_eq!(grpc_messages(&framed).unwrap(), vec![&[0x08u8, 0x01][..]]);
    }
}
