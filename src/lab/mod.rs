//! The offline lab: faithful emulations of the Google and AWS endpoints keyless talks to.
