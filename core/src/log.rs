//! One logging shim: maps to `defmt` with the `defmt` feature, to nothing
//! otherwise (the core has no `std` and no `log` dependency). Arguments are
//! still type-checked when logging is compiled out.

#[cfg(feature = "defmt")]
macro_rules! trace {
    ($($arg:tt)*) => { defmt::trace!($($arg)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! trace {
    ($($arg:tt)*) => {{
        if false {
            let _ = ($($arg)*);
        }
    }};
}

#[cfg(feature = "defmt")]
macro_rules! debug {
    ($($arg:tt)*) => { defmt::debug!($($arg)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! debug {
    ($($arg:tt)*) => {{
        if false {
            let _ = ($($arg)*);
        }
    }};
}
