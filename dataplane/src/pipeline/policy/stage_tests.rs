//! The policy stage through the stages and the flow table.
