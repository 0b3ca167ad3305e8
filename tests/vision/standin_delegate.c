/*
 * A stand-in TFLite external delegate, for testing edgeface's delegate path without accelerator hardware.
 *
 * It is a real delegate library with the ABI every external delegate exports (libedgetpu.so.1 included):
 * tflite_plugin_create_delegate / tflite_plugin_destroy_delegate, loaded by the runtime's load_delegate()
 * and handed to the interpreter, which calls its Prepare with the model's graph. Prepare walks the execution
 * plan and counts the nodes by builtin operator code (read back through edgeface_standin_* below), then
 * claims none of them, so every operator runs on the runtime's CPU kernels.
 *
 * What that proves: the card format, the per-model backend choice, the library and options reaching the
 * runtime, the interpreter taking a delegate for exactly the model it was configured for, and (option
 * fail=...) the fall back when a delegate library loads but will not create a delegate, which is what
 * libedgetpu does when no Edge TPU is attached. What it cannot prove: that a compiled Edge TPU model runs
 * on the chip, how much of it is mapped there, its fidelity on the chip, or its speed.
 *
 * Build: cc -shared -fPIC -O1 -o libstandin_delegate.so standin_delegate.c
 *
 * The structures below are the leading fields of TfLiteContext, TfLiteRegistration and TfLiteDelegate
 * as declared in LiteRT's tensorflow/lite/core/c/common.h (a stable C ABI); only those fields are used.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int TfLiteStatus; /* kTfLiteOk == 0 */
typedef struct TfLiteIntArray {
  int size;
  int data[];
} TfLiteIntArray;
typedef struct TfLiteNode TfLiteNode;
struct TfLiteContext;

typedef struct TfLiteRegistration {
  void* (*init)(struct TfLiteContext*, const char*, size_t);
  void (*free)(struct TfLiteContext*, void*);
  TfLiteStatus (*prepare)(struct TfLiteContext*, TfLiteNode*);
  TfLiteStatus (*invoke)(struct TfLiteContext*, TfLiteNode*);
  const char* (*profiling_string)(const struct TfLiteContext*, const TfLiteNode*);
  int32_t builtin_code;
  const char* custom_name;
  int version;
} TfLiteRegistration;

typedef struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(struct TfLiteContext*, TfLiteIntArray**);
  void* tensors;
  void* impl_;
  void* ResizeTensor;
  void (*ReportError)(struct TfLiteContext*, const char*, ...);
  void* AddTensors;
  TfLiteStatus (*GetNodeAndRegistration)(struct TfLiteContext*, int, TfLiteNode**, TfLiteRegistration**);
} TfLiteContext;

typedef struct TfLiteDelegate {
  void* data_;
  TfLiteStatus (*Prepare)(TfLiteContext*, struct TfLiteDelegate*);
  void* CopyFromBufferHandle;
  void* CopyToBufferHandle;
  void* FreeBufferHandle;
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;

#define MAX_CODE 256
static int prepared = 0;       /* Prepare calls, all delegates of this library */
static int nodes_seen = 0;     /* nodes in the last prepared graph */
static int op_counts[MAX_CODE]; /* nodes by builtin code, last prepared graph */
static int custom_nodes = 0;   /* custom-op nodes (an Edge TPU compiled model has edgetpu-custom-op) */

static TfLiteStatus standin_prepare(TfLiteContext* context, TfLiteDelegate* delegate) {
  (void)delegate;
  TfLiteIntArray* plan = NULL;
  if (context->GetExecutionPlan(context, &plan) != 0 || plan == NULL) return 1;
  memset(op_counts, 0, sizeof op_counts);
  custom_nodes = 0;
  for (int i = 0; i < plan->size; ++i) {
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (context->GetNodeAndRegistration(context, plan->data[i], &node, &reg) != 0 || reg == NULL) return 1;
    if (reg->custom_name != NULL) ++custom_nodes;
    if (reg->builtin_code >= 0 && reg->builtin_code < MAX_CODE) ++op_counts[reg->builtin_code];
  }
  nodes_seen = plan->size;
  ++prepared;
  return 0; /* claim no node: the CPU kernels run the whole graph */
}

TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n,
                                              void (*report_error)(const char*)) {
  for (size_t i = 0; i < n; ++i) {
    if (strcmp(keys[i], "fail") == 0) { /* behave as libedgetpu does with no device attached */
      if (report_error) report_error(values[i]);
      return NULL;
    }
  }
  TfLiteDelegate* d = (TfLiteDelegate*)calloc(1, sizeof(TfLiteDelegate));
  if (d != NULL) d->Prepare = standin_prepare;
  return d;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) { free(delegate); }

int edgeface_standin_prepared(void) { return prepared; }
int edgeface_standin_nodes(void) { return nodes_seen; }
int edgeface_standin_custom_nodes(void) { return custom_nodes; }
int edgeface_standin_op_count(int builtin_code) {
  return builtin_code >= 0 && builtin_code < MAX_CODE ? op_counts[builtin_code] : 0;
}
