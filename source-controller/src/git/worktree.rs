//! Writes a commit's tree into the work directory: the checkout, without libgit2's `checkout_tree`.
//!
//! libgit2 reads objects through one memory map of the whole pack file (its default window is 1 GiB), so a
//! checkout that reads every blob keeps the whole pack resident until the repository is closed: 18 MiB of RSS
//! for a 19 MB pack, more than the controller's heap. Here the blobs are written in the order they sit in the
//! pack (offsets from the pack's `.idx`), and the repository is reopened after every [`SLICE`] bytes of pack, so
//! only about one slice of the pack is mapped and resident at a time.
//!
//! Files get the blob's bytes as they are stored, with no `.gitattributes` filters (line endings, `ident`), so
//! the artifact does not depend on git configuration on the host. Regular and
//! executable files, symlinks, directories and empty directories for submodules (gitlinks) are created; a tree
//! entry whose name could escape the directory or write into `.git` is refused.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use super::GitError;

/// Pack bytes read between two reopenings of the repository: the bound on the mapped pack in RSS.
const SLICE: u64 = 4 << 20;

/// `100755`: an executable file.
const MODE_EXECUTABLE: i32 = 0o100755;
/// `120000`: a symbolic link.
const MODE_SYMLINK: i32 = 0o120000;
/// `160000`: a gitlink (submodule commit).
const MODE_GITLINK: i32 = 0o160000;

/// A blob to write.
struct Blob {
    path: String,
    oid: Oid,
    mode: i32,
}

/// What to write for a tree: its blobs and the directories to create (parents before children).
#[derive(Default)]
struct Plan {
    dirs: BTreeSet<String>,
    blobs: Vec<Blob>,
}

/// Whether `path` is within one of the sparse directories (or is an ancestor of one, for directories).
fn in_sparse(path: &str, sparse: &[String], is_dir: bool) -> bool {
    sparse.iter().any(|s| {
        path == s
            || path
                .strip_prefix(s.as_str())
                .is_some_and(|r| r.starts_with('/'))
            || (is_dir && s.strip_prefix(path).is_some_and(|r| r.starts_with('/')))
    })
}

/// A tree entry name that is safe to create: not empty, `.`, `..`, `.git` (in any case), and without `/` or NUL.
fn valid_name(name: &str) -> bool {
    !(name.is_empty()
        || name == "."
        || name == ".."
        || name.eq_ignore_ascii_case(".git")
        || name.contains(['/', '\0']))
}

fn plan(tree: &git2::Tree<'_>, sparse: &[String]) -> Result<Plan, GitError> {
    let mut plan = Plan::default();
    let mut invalid = None;
    tree.walk(TreeWalkMode::PreOrder, |root, entry| {
        let name = String::from_utf8_lossy(entry.name_bytes());
        if !valid_name(&name) {
            invalid = Some(format!("{root}{name}"));
            return TreeWalkResult::Abort;
        }
        let path = format!("{root}{name}");
        let mode = entry.filemode();
        let is_dir = matches!(entry.kind(), Some(ObjectType::Tree)) || mode == MODE_GITLINK;
        if !sparse.is_empty() && !in_sparse(&path, sparse, is_dir) {
            return TreeWalkResult::Skip;
        }
        if is_dir {
            plan.dirs.insert(path);
        } else if matches!(entry.kind(), Some(ObjectType::Blob)) {
            plan.blobs.push(Blob {
                path,
                oid: entry.id(),
                mode,
            });
        }
        TreeWalkResult::Ok
    })?;
    match invalid {
        Some(path) => Err(GitError::InvalidPath(path)),
        None => Ok(plan),
    }
}

/// The pack offsets of `oids`, from the `.idx` files under `objects/pack` (version 2, SHA-1); `None` for an
/// object in no pack (loose) or when an index cannot be read. Each entry is (pack number, offset).
fn pack_offsets(git_dir: &Path, oids: &[Oid]) -> Vec<Option<(usize, u64)>> {
    let mut found = vec![None; oids.len()];
    let Ok(dir) = fs::read_dir(git_dir.join("objects").join("pack")) else {
        return found;
    };
    let mut indexes: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "idx"))
        .collect();
    indexes.sort();
    for (pack, idx) in indexes.iter().enumerate() {
        let Ok(bytes) = fs::read(idx) else { continue };
        let Some(index) = PackIndex::parse(&bytes) else {
            continue;
        };
        for (slot, oid) in found.iter_mut().zip(oids) {
            if slot.is_none() {
                *slot = index.offset(oid.as_bytes()).map(|o| (pack, o));
            }
        }
    }
    found
}

/// A version 2 pack index: a fan-out table, the sorted object names, CRCs, 31-bit offsets and 64-bit offsets.
struct PackIndex<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> PackIndex<'a> {
    const HEADER: usize = 8;
    const FANOUT: usize = 256 * 4;
    const NAME: usize = 20;

    fn parse(bytes: &'a [u8]) -> Option<Self> {
        if bytes.get(..Self::HEADER)? != [0xff, b't', b'O', b'c', 0, 0, 0, 2] {
            return None;
        }
        let count = Self::u32_at(bytes, Self::HEADER + 255 * 4)? as usize;
        let offsets_end = Self::HEADER + Self::FANOUT + count * (Self::NAME + 4 + 4);
        (bytes.len() >= offsets_end).then_some(Self { bytes, count })
    }

    fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    }

    fn name(&self, i: usize) -> &[u8] {
        let at = Self::HEADER + Self::FANOUT + i * Self::NAME;
        &self.bytes[at..at + Self::NAME]
    }

    fn offset(&self, oid: &[u8]) -> Option<u64> {
        let first = *oid.first()? as usize;
        let lo = match first {
            0 => 0,
            f => Self::u32_at(self.bytes, Self::HEADER + (f - 1) * 4)? as usize,
        };
        let hi = (Self::u32_at(self.bytes, Self::HEADER + first * 4)? as usize).min(self.count);
        let (mut lo, mut hi) = (lo.min(hi), hi);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.name(mid).cmp(oid) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let table = Self::HEADER + Self::FANOUT + self.count * (Self::NAME + 4);
                    let small = Self::u32_at(self.bytes, table + mid * 4)?;
                    if small & 0x8000_0000 == 0 {
                        return Some(u64::from(small));
                    }
                    let large = table + self.count * 4 + (small & 0x7fff_ffff) as usize * 8;
                    return Some(u64::from_be_bytes(
                        self.bytes.get(large..large + 8)?.try_into().ok()?,
                    ));
                }
            }
        }
        None
    }
}

fn io_error(path: &Path, err: std::io::Error) -> GitError {
    GitError::Write(format!("{}: {err}", path.display()))
}

/// Writes `tree` of the repository at `dir` into `dir`: everything, or only what lies under the `sparse`
/// directories. The caller drops every open handle on the repository first, so that the pack is mapped only here.
pub fn write_tree(dir: &Path, tree: Oid, sparse: &[String]) -> Result<(), GitError> {
    write_tree_in_slices(dir, tree, sparse, SLICE).map(|_| ())
}

/// [`write_tree`] with the pack read `slice` bytes at a time; returns how often the repository was opened.
fn write_tree_in_slices(
    dir: &Path,
    tree: Oid,
    sparse: &[String],
    slice: u64,
) -> Result<usize, GitError> {
    let (plan, git_dir) = {
        let repo = Repository::open(dir)?;
        let tree = repo.find_tree(tree)?;
        (plan(&tree, sparse)?, repo.path().to_path_buf())
    };
    for d in &plan.dirs {
        let path = dir.join(d);
        fs::create_dir_all(&path).map_err(|e| io_error(&path, e))?;
    }
    let oids: Vec<Oid> = plan.blobs.iter().map(|b| b.oid).collect();
    let offsets = pack_offsets(&git_dir, &oids);
    drop(oids);
    let mut order: Vec<usize> = (0..plan.blobs.len()).collect();
    // In pack order; objects in no pack (none after a fetch) last, in path order.
    order.sort_by_key(|&i| (offsets[i].is_none(), offsets[i]));

    let mut repo = None;
    let mut opened = 0;
    let mut slice_start = None;
    for i in order {
        if let (Some((pack, offset)), Some((start_pack, start))) = (offsets[i], slice_start)
            && (pack != start_pack || offset.saturating_sub(start) >= slice)
        {
            // Closing the repository unmaps the pack: the pages read so far leave the RSS. It must be
            // closed before it is opened again: libgit2 shares an open pack between repositories.
            repo = None;
            slice_start = None;
        }
        if slice_start.is_none() {
            slice_start = offsets[i];
        }
        let repo = match &mut repo {
            Some(r) => r,
            None => {
                opened += 1;
                repo.insert(Repository::open(dir)?)
            }
        };
        let blob = &plan.blobs[i];
        let path = dir.join(&blob.path);
        let object = repo.find_blob(blob.oid)?;
        if blob.mode == MODE_SYMLINK {
            let target = String::from_utf8_lossy(object.content()).into_owned();
            std::os::unix::fs::symlink(&target, &path).map_err(|e| io_error(&path, e))?;
            continue;
        }
        let mut file = fs::File::create(&path).map_err(|e| io_error(&path, e))?;
        file.write_all(object.content())
            .map_err(|e| io_error(&path, e))?;
        if blob.mode == MODE_EXECUTABLE {
            file.set_permissions(fs::Permissions::from_mode(0o755))
                .map_err(|e| io_error(&path, e))?;
        }
    }
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_paths_match_whole_components() {
        let sparse = vec!["apps/prod".to_string()];
        assert!(in_sparse("apps/prod", &sparse, true));
        assert!(in_sparse("apps/prod/a.yaml", &sparse, false));
        assert!(in_sparse("apps", &sparse, true), "an ancestor directory");
        assert!(!in_sparse("apps/production/a.yaml", &sparse, false));
        assert!(!in_sparse("apps/x.yaml", &sparse, false));
        assert!(!in_sparse("app", &sparse, true));
    }

    #[test]
    fn names_that_escape_are_refused() {
        for bad in ["", ".", "..", ".git", ".GIT", "a/b", "a\0b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for good in ["a", ".gitignore", "..a", ".github"] {
            assert!(valid_name(good), "{good:?}");
        }
    }

    #[test]
    fn pack_index_gives_offsets_like_git_verify_pack() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        git(&["init", "-q"]);
        for i in 0..40 {
            fs::write(
                dir.path().join(format!("f{i}")),
                format!("file {i}\n").repeat(i + 1),
            )
            .unwrap();
        }
        git(&["add", "-A"]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "c",
        ]);
        git(&["repack", "-adq"]);
        let pack = dir.path().join(".git/objects/pack");
        let idx = fs::read_dir(&pack)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "idx"))
            .unwrap();
        // `git verify-pack -v`: "<sha> <type> <size> <size-in-pack> <offset> ..." per object.
        let listing = git(&["verify-pack", "-v", idx.to_str().unwrap()]);
        let mut expected = Vec::new();
        for line in listing.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() >= 5 && fields[0].len() == 40 {
                expected.push((
                    Oid::from_str(fields[0]).unwrap(),
                    fields[4].parse::<u64>().unwrap(),
                ));
            }
        }
        assert!(expected.len() > 40, "blobs, a tree and a commit");
        let oids: Vec<Oid> = expected.iter().map(|(o, _)| *o).collect();
        let got = pack_offsets(&dir.path().join(".git"), &oids);
        for ((oid, offset), got) in expected.iter().zip(got) {
            assert_eq!(got, Some((0, *offset)), "{oid}");
        }
        let absent = Oid::from_str("0123456789012345678901234567890123456789").unwrap();
        assert_eq!(
            pack_offsets(&dir.path().join(".git"), &[absent]),
            vec![None]
        );
    }

    /// Runs git in `dir` without the host's configuration; returns stdout.
    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Every path under `root` except `.git`, with its kind, mode bits and content (or link target).
    fn listing(root: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let path = e.unwrap().path();
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                if rel == ".git" {
                    continue;
                }
                let meta = fs::symlink_metadata(&path).unwrap();
                let what = if meta.is_symlink() {
                    format!("link {}", fs::read_link(&path).unwrap().display())
                } else if meta.is_dir() {
                    stack.push(path.clone());
                    "dir".to_string()
                } else {
                    let exec = meta.permissions().mode() & 0o111 != 0;
                    format!("file exec={exec} {:?}", fs::read(&path).unwrap())
                };
                out.push((rel, what));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn writes_what_git_checks_out_one_slice_at_a_time() {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        fs::create_dir_all(src.join("deploy/base")).unwrap();
        fs::create_dir_all(src.join("deploy/prod")).unwrap();
        // Incompressible-ish content, so the pack spans many small slices.
        let mut x = 7u64;
        for i in 0..60 {
            let content: Vec<u8> = (0..6000)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (x >> 56) as u8
                })
                .collect();
            let dir = ["deploy/base", "deploy/prod", ""][i % 3];
            fs::write(src.join(dir).join(format!("f{i}.bin")), content).unwrap();
        }
        fs::write(src.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("deploy/base", src.join("current")).unwrap();
        // Stored with LF; libgit2's checkout would write CRLF. The artifact holds what git stores.
        fs::write(src.join(".gitattributes"), "*.txt text eol=crlf\n").unwrap();
        fs::write(src.join("notes.txt"), "a\nb\n").unwrap();
        git(&src, &["init", "-q", "-b", "main"]);
        git(&src, &["add", "-A"]);
        git(
            &src,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "c",
            ],
        );
        let tree_id = Oid::from_str(git(&src, &["rev-parse", "HEAD^{tree}"]).trim()).unwrap();

        // A repository holding the objects in a pack, as after a fetch.
        let dst = work.path().join("dst");
        fs::create_dir_all(&dst).unwrap();
        git(&dst, &["init", "-q"]);
        git(
            &dst,
            &[
                "-c",
                "fetch.unpackLimit=1",
                "fetch",
                "-q",
                src.to_str().unwrap(),
                "main",
            ],
        );
        let opened = write_tree_in_slices(&dst, tree_id, &[], 16 << 10).unwrap();
        assert!(
            opened >= 10,
            "360 KB of pack in 16 KiB slices: opened {opened} times"
        );

        let mut expected = listing(&src);
        for (path, what) in &mut expected {
            if path == "notes.txt" {
                assert!(what.contains("[97, 10, 98, 10]"), "stored as LF: {what}");
            }
        }
        assert_eq!(listing(&dst), expected);

        // Sparse: only deploy/prod, with its parent directory.
        let sparse_dst = work.path().join("sparse");
        fs::create_dir_all(&sparse_dst).unwrap();
        git(&sparse_dst, &["init", "-q"]);
        git(
            &sparse_dst,
            &[
                "-c",
                "fetch.unpackLimit=1",
                "fetch",
                "-q",
                src.to_str().unwrap(),
                "main",
            ],
        );
        write_tree_in_slices(&sparse_dst, tree_id, &["deploy/prod".to_string()], SLICE).unwrap();
        let got = listing(&sparse_dst);
        let want: Vec<_> = expected
            .iter()
            .filter(|(p, _)| p == "deploy" || p.starts_with("deploy/prod"))
            .cloned()
            .collect();
        assert_eq!(got, want);
    }
}
