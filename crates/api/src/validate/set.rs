//! Rules that span objects: checked over a whole set before it is accepted.
