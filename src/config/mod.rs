//! `b9.conf`: INI sections with Haskell-literal values (SPEC Part B §10).
