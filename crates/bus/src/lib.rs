//! nowstream-bus
