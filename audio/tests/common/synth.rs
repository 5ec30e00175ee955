//! Hand-built audio files for the error and fuzz tests: WAV headers written field by field,
//! and a minimal FLAC encoder (verbatim subframes) so the symphonia path is exercised too.
#![allow(dead_code)]

/// Small deterministic RNG (xorshift64*), so the tests need no extra crate.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }
}

pub const PCM: u16 = 1;
pub const IEEE_FLOAT: u16 = 3;

/// A RIFF/WAVE file with a 16-byte fmt chunk. `declared` overrides the data chunk length.
pub fn wav(
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    data: &[u8],
    declared: Option<u32>,
) -> Vec<u8> {
    let block_align = channels.wrapping_mul(bits / 8);
    let byte_rate = rate.wrapping_mul(u32::from(block_align));
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&byte_rate.to_le_bytes());
    v.extend_from_slice(&block_align.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&declared.unwrap_or(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

pub fn pcm16_wav(channels: u16, rate: u32, interleaved: &[i16]) -> Vec<u8> {
    let data: Vec<u8> = interleaved.iter().flat_map(|s| s.to_le_bytes()).collect();
    wav(PCM, channels, rate, 16, &data, None)
}

pub fn f32_wav(channels: u16, rate: u32, interleaved: &[f32]) -> Vec<u8> {
    let data: Vec<u8> = interleaved.iter().flat_map(|s| s.to_le_bytes()).collect();
    wav(IEEE_FLOAT, channels, rate, 32, &data, None)
}

fn crc8(bytes: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &b in bytes {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x8005
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A 16-bit FLAC file with independent verbatim subframes, blocks of `block` frames.
/// `rate` must fit 20 bits, `channels` 1..=8, fewer than 128 blocks.
pub fn flac16(channels: u16, rate: u32, interleaved: &[i16], block: usize) -> Vec<u8> {
    let ch = usize::from(channels);
    let frames = interleaved.len() / ch;
    let mut v = b"fLaC".to_vec();
    // STREAMINFO, the last metadata block: 34 bytes.
    v.extend_from_slice(&[0x80, 0, 0, 34]);
    v.extend_from_slice(&(block as u16).to_be_bytes());
    v.extend_from_slice(&(block as u16).to_be_bytes());
    v.extend_from_slice(&[0; 6]); // min/max frame size unknown
                                  // 20 bits rate, 3 bits channels-1, 5 bits bps-1, 36 bits total frames.
    let packed: u64 =
        (u64::from(rate) << 44) | (u64::from(channels - 1) << 41) | (15u64 << 36) | frames as u64;
    v.extend_from_slice(&packed.to_be_bytes());
    v.extend_from_slice(&[0; 16]); // MD5 unknown
    for (index, chunk) in interleaved.chunks(block * ch).enumerate() {
        let n = chunk.len() / ch;
        let mut f = vec![0xFF, 0xF8];
        f.push(0x70); // block size: 16-bit (n-1) at the end; rate from STREAMINFO
        f.push(((channels as u8 - 1) << 4) | (0b100 << 1)); // independent, 16 bps
        f.push(index as u8); // frame number (UTF-8 coded, < 128)
        f.extend_from_slice(&((n - 1) as u16).to_be_bytes());
        f.push(crc8(&f));
        for c in 0..ch {
            f.push(0b0000_0010); // VERBATIM, no wasted bits
            for i in 0..n {
                f.extend_from_slice(&chunk[i * ch + c].to_be_bytes());
            }
        }
        let crc = crc16(&f);
        f.extend_from_slice(&crc.to_be_bytes());
        v.extend_from_slice(&f);
    }
    v
}
