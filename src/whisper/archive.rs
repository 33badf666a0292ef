//! Reading, writing and propagating points inside one archive.
