//! Interrupts: Ctrl-C (SIGINT), SIGTERM and SIGHUP end kiln only after the
//! directories it was filling are removed, so that an interrupted pull,
//! sign or test leaves nothing half-written beside the user's files.
//!
//! The signals are blocked in every thread and taken by one thread with
//! `sigwait`, where removing directories is safe (a signal handler may
//! not allocate). Child processes start with an empty signal mask (Rust's
//! `Command` resets it), so Ctrl-C still reaches nix, podman and skopeo
//! through the terminal's process group.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static PARTIAL: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Takes SIGINT, SIGTERM and SIGHUP from here on; call once, before any
/// other thread starts (they inherit the blocked mask).
pub fn install() {
    // SAFETY: sigset_t is plain data that sigemptyset initializes; the
    // mask is changed before any other thread exists, and the waiting
    // thread only reads its own copy of the set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        std::thread::spawn(move || {
            let mut sig: libc::c_int = 0;
            if libc::sigwait(&set, &mut sig) == 0 {
                let removed = remove_all();
                if removed > 0 {
                    eprintln!("kiln: interrupted; removed {removed} unfinished directory(ies)");
                } else {
                    eprintln!("kiln: interrupted");
                }
                std::process::exit(128 + sig);
            }
        });
    }
}

/// Removes every registered directory; how many there were.
fn remove_all() -> usize {
    let mut list = PARTIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = list.len();
    for p in list.drain(..) {
        let _ = std::fs::remove_dir_all(&p);
    }
    n
}

/// Remove `path` if kiln is interrupted before [`forget`] is called.
pub fn register(path: &Path) {
    PARTIAL
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(path.to_path_buf());
}

/// `path` is complete (or gone): an interrupt leaves it alone.
pub fn forget(path: &Path) {
    PARTIAL
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| p != path);
}
