"""The results folder's contract, shared by experiments (which write runs), the runner (which writes
status.json) and the report (which reads both): folder layout and names, atomic writes, run states,
logs, and the versioned records every file of it is written and read through (`records`). Imports
nothing heavy."""
