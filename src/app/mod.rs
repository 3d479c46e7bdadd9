//! The application layer: use cases over the domain's ports, called by http/ and by the
//! background jobs. It knows no SQL, no HTTP and no backend.

pub mod maintenance;
