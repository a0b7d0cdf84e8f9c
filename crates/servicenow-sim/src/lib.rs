//! nowstream-servicenow-sim
