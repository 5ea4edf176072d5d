//! Erlang terms as text (SPEC §3.3, §3.4): parser, printer and proplist merge.
