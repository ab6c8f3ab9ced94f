"""`make bench`: data sets built with COPY, each measurement next to its baseline."""
