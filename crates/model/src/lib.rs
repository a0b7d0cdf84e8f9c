//! nowstream-model
