/* The pvmig subcommands that live in their own files (cmd/pvmig_*.c). */
#ifndef PVM_CMD_COMMANDS_H
#define PVM_CMD_COMMANDS_H

int cmd_migrate(int argc, char **argv);
int cmd_migrations(int argc, char **argv);
int cmd_save(int argc, char **argv);       /* pvmig_ckpt.c */
int cmd_restore(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);

#endif /* PVM_CMD_COMMANDS_H */
