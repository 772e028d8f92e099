//! Ctrl-C, SIGTERM and SIGHUP stop a recording cleanly: they wake the event loop through a
//! pipe, and a second one after the files are closed exits at once.

use std::{
    io,
    os::{fd::AsFd, unix::net::UnixStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use signal_hook::{
    consts::{SIGHUP, SIGINT, SIGTERM},
    flag, low_level,
};

const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

pub struct Signals {
    wake: UnixStream,
    last: Arc<AtomicUsize>,
    exit_on_next: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let (wake, write) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let last = Arc::new(AtomicUsize::new(0));
        let exit_on_next = Arc::new(AtomicBool::new(false));
        for sig in STOP_SIGNALS {
            // Order matters: the exit check runs before the flag is set by this delivery.
            flag::register_conditional_shutdown(sig, 128 + sig, exit_on_next.clone())?;
            flag::register_usize(sig, last.clone(), sig as usize)?;
            low_level::pipe::register(sig, write.try_clone()?)?;
        }
        Ok(Signals {
            wake,
            last,
            exit_on_next,
        })
    }

    /// Readable when a stop signal arrived.
    pub fn fd(&self) -> impl AsFd + '_ {
        self.wake.as_fd()
    }

    /// The stop signal received, if any.
    pub fn received(&self) -> Option<i32> {
        match self.last.load(Ordering::SeqCst) {
            0 => None,
            sig => i32::try_from(sig).ok(),
        }
    }

    /// From now on, another stop signal terminates alloctrace immediately (128 + signal).
    pub fn exit_on_next(&self) {
        self.exit_on_next.store(true, Ordering::SeqCst);
    }
}
