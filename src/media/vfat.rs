//! `CI_VFAT`: a FAT image labelled cidata, sized to fit.
