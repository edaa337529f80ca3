//! Tars runnerx uploads into builders (pure): files with the ownership they must have
//! there. The engine keeps a tar's ownership on upload, which is how files reach the
//! job user's 0700 home without the builder's root entering it.

/// A tar of `(path relative to the job user's home, content, mode)` entries, owned by
/// the job user (`spec::job_home`) (secrets the job's own tools read: service env files, node keys).
pub(crate) fn home_tar(
    (home, owner): (&str, (u32, u32)),
    files: &[(String, Vec<u8>, u32)],
) -> Vec<u8> {
    let home = home.trim_start_matches('/');
    let full: Vec<(String, &[u8], u32)> = files
        .iter()
        .map(|(p, c, m)| (format!("{home}/{p}"), c.as_slice(), *m))
        .collect();
    let refs: Vec<(&str, &[u8], u32)> = full.iter().map(|(p, c, m)| (p.as_str(), *c, *m)).collect();
    tar_owned(&refs, Some((home, owner)))
}

/// An uncompressed tar of `(path, content, mode)` entries owned by root, except that entries under `user.0` (a home directory, relative) belong to
/// the (uid, gid) `user.1`, with their parent directories (0700) in the tar too: the builder's
/// root cannot chown inside a 0700 home it may not enter (no CAP_DAC_OVERRIDE), and the
/// engine keeps a tar's ownership on upload.
pub(crate) fn tar_owned(files: &[(&str, &[u8], u32)], user: Option<(&str, (u32, u32))>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs_done = std::collections::BTreeSet::new();
    let header = |size: u64, mode: u32, (uid, gid): (u32, u32), kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(uid.into());
        h.set_gid(gid.into());
        h.set_mtime(0);
        h.set_entry_type(kind);
        h
    };
    for (path, data, mode) in files {
        let mut uid = (0, 0);
        if let Some((home, owner)) = user
            && let Some(rest) = path.strip_prefix(home).and_then(|r| r.strip_prefix('/'))
        {
            uid = owner;
            // Every directory between the home and the file, outermost first.
            let mut dir = home.to_string();
            let parents = rest.rsplit_once('/').map_or("", |(d, _)| d);
            for part in parents.split('/').filter(|p| !p.is_empty()) {
                dir = format!("{dir}/{part}");
                if dirs_done.insert(dir.clone()) {
                    let mut h = header(0, 0o700, owner, tar::EntryType::Directory);
                    b.append_data(&mut h, format!("{dir}/"), std::io::empty())
                        .expect("writing a tar to memory cannot fail");
                }
            }
        }
        let mut h = header(data.len() as u64, *mode, uid, tar::EntryType::Regular);
        b.append_data(&mut h, path, *data)
            .expect("writing a tar to memory cannot fail");
    }
    b.into_inner().expect("writing a tar to memory cannot fail")
}
