"""One file per roadmap task: the nn.Module (the architecture) and the LightningModule (the recipe).

The file name is the task name: configs/<task>.yaml, runs/<task>/ and tests/test_<task>.py follow it.
"""
