"""What the tests share besides pytest's fixtures (tests/conftest.py): the data they
make and find (`data`), a stand-in feature network (`standin`), commands run
in-process (`commands`), processes Ctrl-C'd as a terminal would and always ended
(`processes`), sweeps started as a user would (`sweeps`), tiny model settings
(`tiny`) and Tune's log checks (`tune_logs`)."""
