//! ITU-R BS.1770-4 / EBU R128 loudness. STUB: implementation in progress.
