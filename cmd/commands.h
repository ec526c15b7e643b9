/* The pvmig subcommands that live in their own files (cmd/pvmig_*.c). */
#ifndef PVM_CMD_COMMANDS_H
#define PVM_CMD_COMMANDS_H

int cmd_migrate(int argc, char **argv);
int cmd_migrations(int argc, char **argv);
int cmd_save(int argc, char **argv);       /* pvmig_ckpt.c */
int cmd_restore(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_demo(int argc, char **argv);       /* pvmig_demo.c */

struct pvm_kv;
/* pvmig_migrate.c: the progress line (on a terminal) and the statistics
 * table of a migration's RESULT, also used by pvmig demo. */
void migrate_draw_progress(const struct pvm_kv *kv);
void migrate_print_stats(const struct pvm_kv *kv);
int cmd_tunnel(int argc, char **argv);     /* pvmig_tunnel.c */

#endif /* PVM_CMD_COMMANDS_H */
