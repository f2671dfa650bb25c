//! Reading text inputs (files or stdin) in bounded chunks, so large inputs are never held whole.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Where a text comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Standard input.
    Stdin,
    /// A file on disk.
    File(PathBuf),
}

impl Source {
    /// The sources named on the command line, or stdin when there are none; `-` means stdin.
    pub fn from_args(files: &[PathBuf]) -> Vec<Source> {
        if files.is_empty() {
            return vec![Source::Stdin];
        }
        files
            .iter()
            .map(|path| {
                if path.as_os_str() == "-" {
                    Source::Stdin
                } else {
                    Source::File(path.clone())
                }
            })
            .collect()
    }

    /// How the source is shown in output.
    pub fn label(&self) -> String {
        match self {
            Source::Stdin => "-".to_owned(),
            Source::File(path) => path.display().to_string(),
        }
    }

    /// Calls `on_text` with consecutive UTF-8 pieces of the source, 64 KiB at a time.
    pub fn for_each_chunk(&self, on_text: impl FnMut(&str)) -> anyhow::Result<()> {
        match self {
            Source::Stdin => read_utf8_chunks(io::stdin().lock(), Path::new("<stdin>"), on_text),
            Source::File(path) => {
                let file =
                    File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                read_utf8_chunks(file, path, on_text)
            }
        }
    }
}

const CHUNK: usize = 64 * 1024;

/// Decodes a byte stream as UTF-8 piece by piece; a character split between reads is carried
/// over, and invalid UTF-8 is an error naming the byte offset.
fn read_utf8_chunks(
    mut reader: impl Read,
    path: &Path,
    mut on_text: impl FnMut(&str),
) -> anyhow::Result<()> {
    let mut buffer = vec![0u8; CHUNK + 4];
    let mut carried = 0usize;
    let mut offset = 0u64;
    loop {
        let read = match reader.read(&mut buffer[carried..carried + CHUNK]) {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        let filled = carried + read;
        if read == 0 {
            if carried > 0 {
                bail!(
                    "{}: invalid UTF-8 at byte {offset}: input ends inside a character",
                    path.display()
                );
            }
            return Ok(());
        }
        let valid = match std::str::from_utf8(&buffer[..filled]) {
            Ok(text) => text.len(),
            Err(error) if error.error_len().is_none() => error.valid_up_to(),
            Err(error) => bail!(
                "{}: invalid UTF-8 at byte {}",
                path.display(),
                offset + error.valid_up_to() as u64
            ),
        };
        if let Ok(text) = std::str::from_utf8(&buffer[..valid]) {
            on_text(text);
        }
        buffer.copy_within(valid..filled, 0);
        carried = filled - valid;
        offset += valid as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(bytes: &[u8], read_size: usize) -> anyhow::Result<String> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.1.min(self.0.len()).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut text = String::new();
        read_utf8_chunks(Trickle(bytes, read_size), Path::new("t"), |piece| {
            text.push_str(piece)
        })?;
        Ok(text)
    }

    #[test]
    fn characters_split_across_reads_are_reassembled() {
        let original = "héllo 日本語 👩‍👩‍👧 end";
        for read_size in 1..8 {
            assert_eq!(pieces(original.as_bytes(), read_size).unwrap(), original);
        }
    }

    #[test]
    fn invalid_utf8_names_the_byte_offset() {
        let error = pieces(b"abc\xffdef", 2).unwrap_err().to_string();
        assert_eq!(error, "t: invalid UTF-8 at byte 3");
        let error = pieces("ab日".as_bytes().split_last().unwrap().1, 3)
            .unwrap_err()
            .to_string();
        assert!(error.contains("ends inside a character"), "{error}");
    }
}
