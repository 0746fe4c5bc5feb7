"""Demo data so that a newcomer sees a populated service at once (``flask rma demo-data``)."""
