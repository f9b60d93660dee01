/*
** Files: IDX (the MNIST family's format, plain or gzip), numeric CSV, and
** safetensors checkpoints. Every reader validates the header and sizes
** against the file before it allocates or copies; a malformed file is a
** DN_EFORMAT error naming the file and what is wrong. Readers take regular
** files only (a device such as /dev/zero, a FIFO or a directory is a DN_EIO
** error), and a read that fails midway, for lack of memory too, is an
** error, never a shorter result. Writers are atomic:
** a temporary file in the same directory, fsync, rename.
*/
#ifndef DROPNET_IO_H
#define DROPNET_IO_H

#include "dropnet/tensor.h"
#include "dropnet/export.h"

DN_BEGIN_DECLS

/* An IDX file (magic 0x00000803 ubyte, 0x0000080C int32, 0x0000080D float32, ...),
   gzip-compressed or not (detected from the content). ubyte data gives a uint8 tensor,
   int32 an int32 tensor, float32 a float32 tensor; the shape is the file's dims. */
DN_API dn_status dn_idx_read(dn_tensor **out, const char *path);
/* Writes t (uint8, int32 or float32) as IDX; gzip when the path ends in ".gz". */
DN_API dn_status dn_idx_write(const char *path, const dn_tensor *t);

/* A numeric CSV file into a float32 [rows, cols] tensor. skip_header: ignore the first
   line. Every row must have the same number of fields; empty fields and non-numbers are
   errors naming the line and column. Fields are finite decimal numbers: hexadecimal
   ("0x1A"), "inf", "infinity", "nan" and values beyond float32's range are DN_EFORMAT. */
DN_API dn_status dn_csv_read(dn_tensor **out, const char *path, char delimiter, bool skip_header);

/* Writes n bytes of data to path atomically, like the other writers: a temporary file
   in path's directory, fsync, rename over path (then fsync of the directory). Any
   failure (a full disk, a missing directory, path naming a directory) is DN_EIO naming
   path, and leaves an existing file at path as it was. */
DN_API dn_status dn_write_file(const char *path, const void *data, size_t n);

/* Creates directory path and any missing parent (as `mkdir -p`); an existing directory is
   fine. A component that cannot be created, or path naming something else than a
   directory, is DN_EIO naming it and the reason. */
DN_API dn_status dn_make_directory(const char *path);

/* --- safetensors ---------------------------------------------------------------- */

typedef struct dn_named_tensor {
  const char *name;
  dn_tensor *tensor;     /* borrowed when writing; a new reference when read */
} dn_named_tensor;

typedef struct dn_metadata_entry {
  const char *key, *value;   /* safetensors metadata is a string -> string map */
} dn_metadata_entry;

/* Writes the tensors (F32, I32 or U8; any layout, written contiguous little-endian) and the
   metadata to path atomically. Names must be unique and non-empty. */
DN_API dn_status dn_safetensors_save(const char *path, const dn_named_tensor *tensors, int count,
                                     const dn_metadata_entry *metadata, int metadata_count);

/* The contents of a safetensors file. Free with dn_safetensors_free. */
typedef struct dn_safetensors {
  int count;
  dn_named_tensor *tensors;          /* names and tensors owned by this struct */
  int metadata_count;
  dn_metadata_entry *metadata;       /* owned */
} dn_safetensors;

/* Reads path; rejects bad JSON, unknown dtypes, offsets past the end of the data,
   overlapping or out-of-order-but-overlapping ranges, sizes that do not match the shape,
   a header length past the end of the file, and an empty tensor name (which
   dn_safetensors_save refuses too). Supported dtypes: F32, I32, U8 (others are an
   error naming the dtype). */
DN_API dn_status dn_safetensors_load(dn_safetensors **out, const char *path);
DN_API void dn_safetensors_free(dn_safetensors *st);

DN_END_DECLS

#endif
