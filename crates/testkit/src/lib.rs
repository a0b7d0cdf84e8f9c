//! nowstream-testkit
