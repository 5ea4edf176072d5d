//! MBR and GPT partition tables: finding partition n of an image.
