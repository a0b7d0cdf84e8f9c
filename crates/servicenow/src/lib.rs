//! nowstream-servicenow
