/* kiln: the command-line tool. Dispatches to one command per file. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary;
} commands[] = {
    {"inspect", cmd_inspect, "show a model's inputs, outputs, ops, parameters and memory"},
    {"run", cmd_run, "run a model on raw tensors (.npy in, .npy out)"},
    {"classify", cmd_classify, "classify an image"},
    {"detect", cmd_detect, "detect objects in an image (default: the shared SSD on the shared photo)"},
    {"convert", cmd_convert, "transform a model (e.g. append SSD post-processing)"},
    {"quantize", cmd_quantize, "quantize a float model to full int8 with calibration images"},
    {"bench", cmd_bench, "measure a model's load time, latency, throughput and memory"},
    {"data", cmd_data, "check a dataset (VOC, COCO, YOLO, AutoML CSV, IDX, folders) or import it"},
    {"train", cmd_train, "train a classifier on labelled images: float and int8 models, report"},
    {"eval", cmd_eval, "measure a model on a dataset: accuracy and confusion matrix, or COCO mAP"},
    {"studio", cmd_studio, "run kiln studio: upload, label, train and download models over a REST API"},
    {"worker", cmd_worker, "run a studio's training jobs on this machine (remote worker)"},
    {"serve", cmd_serve, "serve models over HTTP (Open Inference Protocol v2, image endpoints, metrics)"},
    {"compile", cmd_compile, "compile int8 models for an edge target (Edge TPU, CPU): op mapping, caching, estimate"},
    {"imprint", cmd_imprint, "learn new classes from a few images by weight imprinting (on-device)"},
    {"retrain-last", cmd_retrain_last, "retrain a classifier's last layer on embeddings by SGD (on-device)"},
    {"package", cmd_package, "build an OCI container image that serves a model; push it to a registry"},
    {"health", cmd_health, "probe a server's health URL (exit 0 when it answers 2xx)"},
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: kiln COMMAND [ARGS]\n\n"
          "kiln turns labelled images into fast int8 models for edge devices and runs them.\n\n"
          "commands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\n'kiln COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return CLI_USAGE;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return CLI_OK;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("kiln 0.1.0\n");
    return CLI_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "kiln: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return CLI_USAGE;
}
