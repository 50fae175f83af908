//! Entry points for the fuzz targets (`vmm/fuzz`): the bootloader text parsers,
//! called the way [`crate::kernels`] calls them. Not an API: hidden from the docs.

use crate::{bls, grub, grubenv};

/// What the parsers made of the texts: the default entry's kernel, its
/// arguments (expanded and cleaned) and initrds, and how many entries there were.
#[derive(Debug, Default)]
pub struct Parsed {
    pub entries: usize,
    pub kernel: Option<String>,
    pub args: Vec<String>,
    pub initrds: Vec<String>,
}

/// `grubenv` then `grub.cfg`, as an inventory reads them.
pub fn grub_cfg(grubenv_text: &str, cfg: &str) -> Parsed {
    let env = grubenv::parse(grubenv_text);
    let menu = grub::parse(cfg);
    let entries = menu.entries().len();
    match menu.default_entry(env.get("saved_entry").map(String::as_str)) {
        Some(e) => Parsed {
            entries,
            kernel: Some(e.kernel.clone()),
            args: grub::clean_args(&e.args),
            initrds: e.initrds.clone(),
        },
        None => Parsed {
            entries,
            ..Parsed::default()
        },
    }
}

/// `grubenv` then BLS entries (`(id, text)`), as an inventory reads them.
pub fn bls_entries(grubenv_text: &str, files: &[(&str, &str)]) -> Parsed {
    let env = grubenv::parse(grubenv_text);
    let mut entries: Vec<_> = files
        .iter()
        .map(|(id, text)| bls::parse(id, text))
        .collect();
    bls::sort(&mut entries);
    let saved = env.get("saved_entry").map(String::as_str);
    match bls::default_index(&entries, saved).map(|i| &entries[i]) {
        Some(e) => Parsed {
            entries: entries.len(),
            kernel: e.linux.clone(),
            args: grub::clean_args(&grubenv::expand(&e.options, &env)),
            initrds: e.initrds.clone(),
        },
        None => Parsed::default(),
    }
}
