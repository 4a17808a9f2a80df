//! Screenshots the browser tests take: saved under `<target>/ui-screenshots/` (for a CI to
//! collect) and decoded with the `png` crate, to be checked as a person would look at them.

use std::path::PathBuf;

/// Where the screenshots go: `<target>/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    dir
}

/// A decoded screenshot: its pixels as RGB.
pub struct Picture {
    pixels: Vec<[u8; 3]>,
}

impl Picture {
    /// Decodes `png` and saves it as `name`.png.
    pub fn keep(png: &[u8], name: &str) -> Picture {
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("save the screenshot");
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .expect("a PNG");
        let mut buffer = vec![0; reader.output_buffer_size().expect("a size")];
        let frame = reader.next_frame(&mut buffer).expect("a frame");
        let channels = frame.color_type.samples();
        assert_eq!(frame.bit_depth, png::BitDepth::Eight, "{name}");
        assert!(channels >= 3, "{name}: {:?}", frame.color_type);
        let pixels = buffer[..frame.buffer_size()]
            .chunks_exact(channels)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        Picture { pixels }
    }

    /// The mean relative luminance, 0 (black) to 1 (white).
    pub fn luminance(&self) -> f64 {
        let sum: f64 = self
            .pixels
            .iter()
            .map(|[r, g, b]| {
                (0.2126 * f64::from(*r) + 0.7152 * f64::from(*g) + 0.0722 * f64::from(*b)) / 255.0
            })
            .sum();
        sum / self.pixels.len() as f64
    }

    /// The share of pixels whose colour leans red (red above both green and blue).
    pub fn reddish(&self) -> f64 {
        let red = self
            .pixels
            .iter()
            .filter(|[r, g, b]| {
                i32::from(*r) > i32::from(*g) + 12 && i32::from(*r) > i32::from(*b) + 12
            })
            .count();
        red as f64 / self.pixels.len() as f64
    }

    /// The share of pixels that differ from the most common colour: 0 for a blank page.
    pub fn drawn(&self) -> f64 {
        let mut counts = std::collections::HashMap::new();
        for pixel in &self.pixels {
            *counts.entry(*pixel).or_insert(0usize) += 1;
        }
        let background = counts.values().max().copied().unwrap_or(0);
        1.0 - background as f64 / self.pixels.len() as f64
    }
}
