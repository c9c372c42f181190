"""`python -m roadseg.data.samples` prints the shipped sample frame's path (for `roadseg predict "$(...)"`)."""

from roadseg.data.samples import FRAME

print(FRAME)
