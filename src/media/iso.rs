//! `CI_ISO`: ISO9660 with Rock Ridge and Joliet, volume id `cidata`.
