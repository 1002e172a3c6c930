//! A zstd frame written as it is produced: the producer writes into a pipe
//! on one thread while ruzstd compresses on another.
//!
//! ruzstd's encoder pulls its input from a `Read` and panics on I/O errors,
//! while the tar writer pushes into a `Write`. The pipe turns one into the
//! other with a few chunks in flight (memory stays bounded whatever the
//! layer's size), the two halves use two cores, and the compressor's drain
//! keeps the first write error instead of letting the encoder panic on it.
//! Pure Rust with no CPU-dependent paths: the bytes are the same on every
//! machine, which the reproducibility contract needs.

use ruzstd::encoding::{CompressionLevel, FrameCompressor};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// Size of the chunks passed to the compressor (one zstd block).
const CHUNK: usize = 128 * 1024;
/// Chunks in flight between the producer and the compressor.
const IN_FLIGHT: usize = 4;

/// Runs `produce` with a writer whose bytes leave as one zstd frame
/// (ruzstd's fastest level, about zstd's level 1, with a content checksum)
/// into `sink`. Returns the sink and what `produce` returned. An error of
/// `produce` or of the sink is returned as it was; the sink then holds an
/// incomplete frame that the caller discards.
pub fn compress<W, T>(
    sink: W,
    produce: impl FnOnce(&mut dyn Write) -> io::Result<T>,
) -> io::Result<(W, T)>
where
    W: Write + Send,
{
    let (tx, rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
    let failed = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        let compressor = {
            let failed = Arc::clone(&failed);
            scope.spawn(move || {
                let mut frame = FrameCompressor::new(CompressionLevel::Fastest);
                frame.set_source(PipeReader {
                    rx,
                    chunk: Vec::new(),
                    pos: 0,
                });
                frame.set_drain(LatchedWriter {
                    inner: sink,
                    error: None,
                    failed,
                });
                frame.compress();
                frame.take_drain().expect("the drain was set")
            })
        };
        let mut pipe = PipeWriter {
            tx: Some(tx),
            buf: Vec::with_capacity(CHUNK),
            failed: &failed,
        };
        let produced = produce(&mut pipe).and_then(|t| pipe.flush().map(|()| t));
        // Closing the pipe ends the frame, whether or not `produce` succeeded.
        drop(pipe);
        let drain = compressor
            .join()
            .map_err(|_| io::Error::other("the zstd compressor panicked"))?;
        let LatchedWriter {
            mut inner, error, ..
        } = drain;
        if let Some(e) = error {
            return Err(e);
        }
        let t = produced?;
        inner.flush()?;
        Ok((inner, t))
    })
}

/// The producer's end: fills chunks and hands them over.
struct PipeWriter<'a> {
    tx: Option<SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
    failed: &'a AtomicBool,
}

impl PipeWriter<'_> {
    fn send(&mut self) -> io::Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            // The sink failed: stop producing; compress() returns its error.
            return Err(io::Error::other("the compressed output failed"));
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let tx = self.tx.as_ref().expect("the pipe is open while writing");
        tx.send(chunk)
            .map_err(|_| io::Error::other("the zstd compressor stopped"))
    }
}

impl Write for PipeWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

impl Drop for PipeWriter<'_> {
    fn drop(&mut self) {
        self.tx.take();
    }
}

/// The compressor's source: reads the chunks in order; the end of the
/// pipe is the end of the input.
struct PipeReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The compressor's drain: keeps the first error and swallows what follows,
/// so that the encoder, which unwraps its writes, never panics on a full
/// disk; the producer sees `failed` and stops.
struct LatchedWriter<W> {
    inner: W,
    error: Option<io::Error>,
    failed: Arc<AtomicBool>,
}

impl<W: Write> Write for LatchedWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.error.is_none() {
            if let Err(e) = self.inner.write_all(data) {
                self.error = Some(e);
                self.failed.store(true, Ordering::Relaxed);
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        ruzstd::decoding::StreamingDecoder::new(frame)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: repeated text with a counter.
        let mut v = Vec::with_capacity(len);
        let mut i = 0u64;
        while v.len() < len {
            v.extend_from_slice(format!("line {i} of a layer\n").as_bytes());
            i += 1;
        }
        v.truncate(len);
        v
    }

    #[test]
    fn round_trips_in_odd_sized_writes_and_is_deterministic() {
        let data = sample(3 * CHUNK + 12_345);
        let run = || {
            compress(Vec::new(), |w| {
                for piece in data.chunks(7_001) {
                    w.write_all(piece)?;
                }
                Ok(42)
            })
            .unwrap()
        };
        let (a, t) = run();
        let (b, _) = run();
        assert_eq!(t, 42);
        assert_eq!(a, b);
        assert!(a.len() < data.len() / 4, "{} bytes", a.len());
        assert_eq!(decode(&a), data);
    }

    #[test]
    fn empty_input_is_a_valid_frame() {
        let (frame, ()) = compress(Vec::new(), |_| Ok(())).unwrap();
        assert!(decode(&frame).is_empty());
    }

    #[test]
    fn a_producer_error_is_returned() {
        let err = compress(Vec::new(), |w| {
            w.write_all(&sample(CHUNK * 2))?;
            Err::<(), _>(io::Error::other("tar failed"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "tar failed");
    }

    /// A sink that fails after some bytes, as a full disk does.
    #[derive(Debug)]
    struct Full(usize);
    impl Write for Full {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.0 < data.len() {
                return Err(io::Error::from_raw_os_error(28));
            }
            self.0 -= data.len();
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_sink_error_is_returned_not_a_panic() {
        let data = sample(64 * CHUNK);
        let err = compress(Full(1000), |w| w.write_all(&data)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "{err}");
    }
}
