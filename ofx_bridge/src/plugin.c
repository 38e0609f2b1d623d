/* vidfx OFX plugin: every vidfx node as an OpenFX image effect, rendered by `vidfx serve`.
 *
 * The plugin holds no image processing and no Python. At load it reads the node list and
 * parameter schemas from the manifest written into Contents/Resources/nodes.txt at build time
 * (so the set and order of plugins never depend on the live server), defines one plugin per
 * node (`org.vidfx.<node>`), and for every action that needs the node (region of definition,
 * frames needed, clip preferences, render) it sends the instance's description and the pixels
 * (in shared memory) to the server, after checking once that the server's node matches the
 * manifest's. Any server failure becomes kOfxStatFailed plus a host message (a persistent one
 * where the host has message suite V2).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ofx_abi.h"
#include "wire.h"

#define EXPORT VFX_EXPORT
#define MAX_PLUGINS 64
#define MAX_INPUTS 2
#define POOL_KEEP 4 /* idle shared-memory buffers kept per instance (any number while busy) */
#define SIZE_CACHE 4 /* output-size answers cached per instance (full and proxy scale, ...) */

/* ---- node descriptions (from the server's `nodes` reply) -------------------------------- */
typedef struct ParamDesc {
  const char *name, *kind, *def, *min, *max, *dmin, *dmax, *doc;
  char **choices;
  int nchoices;
} ParamDesc;

typedef struct NodeDesc {
  const char *name, *label, *doc, *context, *tparam, *hash, *alpha;
  const char *mask; /* the optional mask clip's name ("" for none): input `inputs`, sent when usable */
  int inputs;       /* required input clips */
  int checked; /* 1: the live server's node was found equal to the manifest's */
  int nparams;
  ParamDesc *params;
  char identifier[160];
  OfxPlugin plugin;
} NodeDesc;

static vfx_reply g_nodes_reply; /* owns the strings NodeDesc points into */
static NodeDesc g_nodes[MAX_PLUGINS];
static int g_num_nodes = -1;

/* ---- host and suites ---------------------------------------------------------------------- */
static OfxHost *g_host;
static const OfxPropertySuiteV1 *g_prop;
static const OfxImageEffectSuiteV1 *g_fx;
static const OfxParameterSuiteV1 *g_param;
static const OfxMessageSuiteV1 *g_msg;
static const OfxMessageSuiteV2 *g_msg2;        /* persistent messages, where the host has them */
static const OfxMemorySuiteV1 *g_mem;           /* fetched for completeness; we use malloc */
static const OfxMultiThreadSuiteV1 *g_threads;  /* splits the pixel copies across the host's threads */

/* ---- per-instance state ------------------------------------------------------------------- */
typedef struct ShmBuf {
  char name[128];
  void *ptr;
  size_t size;
  int busy;
  struct ShmBuf *next;
} ShmBuf;

typedef struct SizeEntry {
  char *key; /* the `info` request */
  int w, h;
  char alpha; /* where the output's alpha comes from: 'n'ode, 's'ource, 'o'paque */
} SizeEntry;

/* A frame this instance sent to the server (which keeps recent ones), by content. */
#define SENT_MAX 64
typedef struct SentFrame {
  int clip;
  double time;
  uint64_t fp;
} SentFrame;

typedef struct Instance {
  NodeDesc *node;
  char id[64];
  OfxImageEffectHandle effect;
  OfxImageClipHandle inputs[MAX_INPUTS];
  OfxImageClipHandle output;
  OfxParamHandle *params;     /* one per ParamDesc */
  OfxParamHandle transition;  /* transition context only */
  pthread_mutex_t lock;       /* guards pool, the size cache, active and destroyed */
  pthread_cond_t idle;        /* signalled when the last running action returns */
  int active;                 /* actions running on this instance (renders, RoD, ...) */
  int destroyed;              /* DestroyInstance came: running renders abort, no new ones start */
  int persistent;             /* a persistent error message is shown on the effect */
  ShmBuf *pool;               /* one buffer per running render, a few idle ones kept */
  int busy, peak;             /* buffers in use now, and the most in use at once */
  unsigned gen;
  SizeEntry sizes[SIZE_CACHE]; /* recent `info` requests and their answers */
  int size_next;
  SentFrame sent[SENT_MAX];   /* guarded by lock */
  int sent_count, sent_next;
} Instance;

/* An instance's action polls the host's abort (and the instance's destruction) while it waits
 * for the server, a starting one included: t_abort is set for the requests of the action
 * running on this thread (hosts without an abort outside renders answer 0). */
typedef struct AbortCtx { Instance *inst; OfxImageEffectHandle effect; } AbortCtx;
static __thread AbortCtx *t_abort;

static int host_aborted(void *ctx) {
  AbortCtx *a = ctx;
  /* a DestroyInstance waiting for this render counts as an abort (and the effect handle is
   * going away: do not call the host with it) */
  if (__atomic_load_n(&a->inst->destroyed, __ATOMIC_SEQ_CST)) return 1;
  return g_fx->abort ? g_fx->abort(a->effect) : 0;
}

/* vfx_request with the current render's abort polling, if any. */
static int request(const vfx_buf *req, vfx_reply *rep, char *err, size_t errn) {
  return vfx_request(req, rep, VFX_START_WAIT, t_abort ? host_aborted : NULL, t_abort, NULL, err, errn);
}

static unsigned g_instance_counter;
static unsigned g_render_counter;

/* Input clips defined on the effect: the required ones, then the optional mask clip. */
static int node_clips(const NodeDesc *n) { return n->inputs + (*n->mask ? 1 : 0); }

static const char *input_clip_name(const NodeDesc *n, int k) {
  if (*n->mask && k == n->inputs) return n->mask;
  if (n->inputs == 2) return k == 0 ? kOfxImageEffectTransitionSourceFromClipName
                                    : kOfxImageEffectTransitionSourceToClipName;
  return kOfxImageEffectSimpleSourceClipName;
}

static void post_error(OfxImageEffectHandle effect, const char *text) {
  fprintf(stderr, "vidfx.ofx: %s\n", text);
  if (g_msg && g_msg->message) g_msg->message((void *)effect, kOfxMessageError, "", "%s", text);
}

/* An error that stays on the effect (host message suite V2) until an action succeeds. */
static void post_persistent(OfxImageEffectHandle effect, int *shown, const char *text) {
  if (g_msg2 && g_msg2->setPersistentMessage) {
    g_msg2->setPersistentMessage((void *)effect, kOfxMessageError, "", "%s", text);
    *shown = 1;
  }
}

static void clear_persistent(OfxImageEffectHandle effect, int *shown) {
  if (*shown && g_msg2 && g_msg2->clearPersistentMessage) g_msg2->clearPersistentMessage((void *)effect);
  *shown = 0;
}

/* ---- loading the node list ---------------------------------------------------------------- */
static char **split_commas(const char *s, int *count) {
  *count = 0;
  if (!s || !*s) return NULL;
  int n = 1;
  for (const char *p = s; *p; p++) n += (*p == ',');
  char **out = calloc((size_t)n, sizeof(char *));
  char *copy = strdup(s);
  if (!out || !copy) {
    free(out);
    free(copy);
    return NULL;
  }
  char *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) out[(*count)++] = tok;
  return out; /* out[0] owns copy */
}

static const char *get_field(const char *fmt, int i, int j, const char *what) {
  char key[256];
  if (j < 0) snprintf(key, sizeof key, fmt, i, what);
  else snprintf(key, sizeof key, fmt, i, j, what);
  const char *v = vfx_reply_get(&g_nodes_reply, key);
  return v ? v : "";
}

static int parse_nodes(void) {
  const char *count = vfx_reply_get(&g_nodes_reply, "count");
  int n = count ? atoi(count) : 0;
  if (n > MAX_PLUGINS) n = MAX_PLUGINS;
  int kept = 0;
  for (int i = 0; i < n; i++) {
    NodeDesc *d = &g_nodes[kept];
    memset(d, 0, sizeof *d);
    d->name = get_field("node.%d.%s", i, -1, "name");
    d->label = get_field("node.%d.%s", i, -1, "label");
    d->doc = get_field("node.%d.%s", i, -1, "doc");
    d->context = get_field("node.%d.%s", i, -1, "context");
    d->tparam = get_field("node.%d.%s", i, -1, "transition_param");
    d->hash = get_field("node.%d.%s", i, -1, "hash");
    d->alpha = get_field("node.%d.%s", i, -1, "alpha");
    d->mask = get_field("node.%d.%s", i, -1, "mask");
    d->inputs = atoi(get_field("node.%d.%s", i, -1, "inputs"));
    d->nparams = atoi(get_field("node.%d.%s", i, -1, "params"));
    if (!*d->name || d->inputs < 1 || node_clips(d) > MAX_INPUTS) continue;
    d->params = calloc((size_t)(d->nparams > 0 ? d->nparams : 1), sizeof(ParamDesc));
    if (!d->params) continue;
    for (int j = 0; j < d->nparams; j++) {
      ParamDesc *p = &d->params[j];
      p->name = get_field("node.%d.param.%d.%s", i, j, "name");
      p->kind = get_field("node.%d.param.%d.%s", i, j, "kind");
      p->def = get_field("node.%d.param.%d.%s", i, j, "default");
      p->min = get_field("node.%d.param.%d.%s", i, j, "min");
      p->max = get_field("node.%d.param.%d.%s", i, j, "max");
      p->dmin = get_field("node.%d.param.%d.%s", i, j, "display_min");
      p->dmax = get_field("node.%d.param.%d.%s", i, j, "display_max");
      p->doc = get_field("node.%d.param.%d.%s", i, j, "doc");
      p->choices = split_commas(get_field("node.%d.param.%d.%s", i, j, "choices"), &p->nchoices);
    }
    snprintf(d->identifier, sizeof d->identifier, "org.vidfx.%s", d->name);
    kept++;
  }
  return kept;
}

static void set_host(OfxHost *host) { g_host = host; }
static OfxStatus plugin_main(int index, const char *action, const void *handle, OfxPropertySetHandle in,
                             OfxPropertySetHandle out);

/* OFX entry points carry no plugin index, so each plugin gets its own trampoline. */
#define TRAMPOLINE(i)                                                                           \
  static OfxStatus main_##i(const char *a, const void *h, OfxPropertySetHandle in,             \
                            OfxPropertySetHandle out) {                                         \
    return plugin_main(i, a, h, in, out);                                                       \
  }
#define T8(b) TRAMPOLINE(b##0) TRAMPOLINE(b##1) TRAMPOLINE(b##2) TRAMPOLINE(b##3) \
              TRAMPOLINE(b##4) TRAMPOLINE(b##5) TRAMPOLINE(b##6) TRAMPOLINE(b##7)
TRAMPOLINE(0) TRAMPOLINE(1) TRAMPOLINE(2) TRAMPOLINE(3) TRAMPOLINE(4) TRAMPOLINE(5) TRAMPOLINE(6) TRAMPOLINE(7)
TRAMPOLINE(8) TRAMPOLINE(9)
T8(1) T8(2) T8(3) T8(4) T8(5)
TRAMPOLINE(18) TRAMPOLINE(19) TRAMPOLINE(28) TRAMPOLINE(29) TRAMPOLINE(38) TRAMPOLINE(39)
TRAMPOLINE(48) TRAMPOLINE(49) TRAMPOLINE(58) TRAMPOLINE(59)
TRAMPOLINE(60) TRAMPOLINE(61) TRAMPOLINE(62) TRAMPOLINE(63)
#define E10(b) main_##b##0, main_##b##1, main_##b##2, main_##b##3, main_##b##4, \
               main_##b##5, main_##b##6, main_##b##7, main_##b##8, main_##b##9
static OfxPluginEntryPoint *const g_entries[MAX_PLUGINS] = {
    main_0, main_1, main_2, main_3, main_4, main_5, main_6, main_7, main_8, main_9,
    E10(1), E10(2), E10(3), E10(4), E10(5), main_60, main_61, main_62, main_63};

static void load_nodes(void) {
  if (g_num_nodes >= 0) return;
  g_num_nodes = 0;
  char path[4200];
  snprintf(path, sizeof path, "%s/nodes.txt", vfx_resources_dir());
  /* The manifest written at build time: the plugin list never depends on the live server
   * (whose nodes are checked against it before first use). */
  char *text = vfx_read_file(path);
  if (!text) {
    fprintf(stderr, "vidfx.ofx: no plugin manifest %s (build the bundle with `vidfx ofx build`)\n", path);
    return;
  }
  vfx_reply_parse(&g_nodes_reply, text);
  g_num_nodes = parse_nodes();
  for (int i = 0; i < g_num_nodes; i++) {
    OfxPlugin *p = &g_nodes[i].plugin;
    p->pluginApi = kOfxImageEffectPluginApi;
    p->apiVersion = kOfxImageEffectPluginApiVersion;
    p->pluginIdentifier = g_nodes[i].identifier;
    p->pluginVersionMajor = 0;
    p->pluginVersionMinor = 1;
    p->setHost = set_host;
    p->mainEntry = g_entries[i];
  }
}

EXPORT int OfxGetNumberOfPlugins(void) {
  load_nodes();
  return g_num_nodes;
}

EXPORT OfxPlugin *OfxGetPlugin(int nth) {
  load_nodes();
  if (nth < 0 || nth >= g_num_nodes) return NULL;
  return &g_nodes[nth].plugin;
}

/* ---- describe ----------------------------------------------------------------------------- */
static OfxStatus on_load(void) {
  if (!g_host || !g_host->fetchSuite) return kOfxStatErrMissingHostFeature;
  g_prop = g_host->fetchSuite(g_host->host, kOfxPropertySuite, 1);
  g_fx = g_host->fetchSuite(g_host->host, kOfxImageEffectSuite, 1);
  g_param = g_host->fetchSuite(g_host->host, kOfxParameterSuite, 1);
  g_msg = g_host->fetchSuite(g_host->host, kOfxMessageSuite, 1);
  g_msg2 = g_host->fetchSuite(g_host->host, kOfxMessageSuite, 2);
  g_mem = g_host->fetchSuite(g_host->host, kOfxMemorySuite, 1);
  g_threads = g_host->fetchSuite(g_host->host, kOfxMultiThreadSuite, 1);
  if (!g_prop || !g_fx || !g_param) return kOfxStatErrMissingHostFeature;
  return kOfxStatOK;
}

static OfxStatus on_describe(NodeDesc *n, OfxImageEffectHandle effect) {
  OfxPropertySetHandle props;
  if (g_fx->getPropertySet(effect, &props) != kOfxStatOK) return kOfxStatErrBadHandle;
  g_prop->propSetString(props, kOfxPropLabel, 0, n->label);
  g_prop->propSetString(props, kOfxPropShortLabel, 0, n->label);
  g_prop->propSetString(props, kOfxPropLongLabel, 0, n->label);
  g_prop->propSetString(props, kOfxPropPluginDescription, 0, n->doc);
  g_prop->propSetString(props, kOfxImageEffectPluginPropGrouping, 0, "vidfx");
  g_prop->propSetString(props, kOfxImageEffectPropSupportedContexts, 0,
                        n->inputs == 2 ? kOfxImageEffectContextTransition : kOfxImageEffectContextFilter);
  g_prop->propSetString(props, kOfxImageEffectPropSupportedPixelDepths, 0, kOfxBitDepthFloat);
  g_prop->propSetInt(props, kOfxImageEffectPropSupportsMultipleClipDepths, 0, 0);
  g_prop->propSetInt(props, kOfxImageEffectPropSupportsMultiResolution, 0, 1);
  g_prop->propSetInt(props, kOfxImageEffectPropSupportsTiles, 0, 0);
  g_prop->propSetInt(props, kOfxImageEffectPropTemporalClipAccess, 0, 1);
  g_prop->propSetInt(props, kOfxImageEffectPluginPropSingleInstance, 0, 0);
  g_prop->propSetInt(props, kOfxImageEffectPluginPropHostFrameThreading, 0, 0);
  g_prop->propSetString(props, kOfxImageEffectPluginRenderThreadSafety, 0, kOfxImageEffectRenderFullySafe);
  g_prop->propSetInt(props, kOfxImageEffectPropSupportsMultipleClipPARs, 0, 0);
  g_prop->propSetInt(props, kOfxImageEffectPluginPropFieldRenderTwiceAlways, 0, 0);
  return kOfxStatOK;
}

/* `mask`: an optional mask clip (RGBA or Alpha images). */
static void define_clip(OfxImageEffectHandle effect, const char *name, int mask) {
  OfxPropertySetHandle props;
  if (g_fx->clipDefine(effect, name, &props) != kOfxStatOK) return;
  g_prop->propSetString(props, kOfxImageEffectPropSupportedComponents, 0, kOfxImageComponentRGBA);
  if (mask) {
    g_prop->propSetString(props, kOfxImageEffectPropSupportedComponents, 1, kOfxImageComponentAlpha);
    g_prop->propSetInt(props, kOfxImageClipPropOptional, 0, 1);
    g_prop->propSetInt(props, kOfxImageClipPropIsMask, 0, 1);
  }
  g_prop->propSetInt(props, kOfxImageEffectPropSupportsTiles, 0, 0);
  if (strcmp(name, kOfxImageEffectOutputClipName) != 0) {
    g_prop->propSetInt(props, kOfxImageEffectPropTemporalClipAccess, 0, 1);
    /* interlaced material: whole frames made of both fields at full height */
    g_prop->propSetString(props, kOfxImageClipPropFieldExtraction, 0, kOfxImageFieldDoubled);
  }
}

static void set_label(OfxPropertySetHandle props, const char *name, const char *doc) {
  char label[128];
  snprintf(label, sizeof label, "%s", name);
  for (char *p = label; *p; p++)
    if (*p == '_') *p = ' ';
  if (label[0] >= 'a' && label[0] <= 'z') label[0] = (char)(label[0] - 'a' + 'A'); /* use_mask: "Use mask" */
  g_prop->propSetString(props, kOfxPropLabel, 0, label);
  if (doc && *doc) g_prop->propSetString(props, kOfxParamPropHint, 0, doc);
}

static void define_param(OfxParamSetHandle set, const ParamDesc *p) {
  OfxPropertySetHandle props = NULL;
  const char *kind = p->kind;
  if (!strcmp(kind, "int")) {
    if (g_param->paramDefine(set, kOfxParamTypeInteger, p->name, &props) != kOfxStatOK) return;
    if (*p->def) g_prop->propSetInt(props, kOfxParamPropDefault, 0, (int)lround(atof(p->def)));
    if (*p->min) g_prop->propSetInt(props, kOfxParamPropMin, 0, (int)ceil(atof(p->min)));
    if (*p->max) g_prop->propSetInt(props, kOfxParamPropMax, 0, (int)floor(atof(p->max)));
    if (*p->dmin) g_prop->propSetInt(props, kOfxParamPropDisplayMin, 0, (int)ceil(atof(p->dmin)));
    if (*p->dmax) g_prop->propSetInt(props, kOfxParamPropDisplayMax, 0, (int)floor(atof(p->dmax)));
  } else if (!strcmp(kind, "float")) {
    if (g_param->paramDefine(set, kOfxParamTypeDouble, p->name, &props) != kOfxStatOK) return;
    if (*p->def) g_prop->propSetDouble(props, kOfxParamPropDefault, 0, atof(p->def));
    if (*p->min) g_prop->propSetDouble(props, kOfxParamPropMin, 0, atof(p->min));
    if (*p->max) g_prop->propSetDouble(props, kOfxParamPropMax, 0, atof(p->max));
    if (*p->dmin) g_prop->propSetDouble(props, kOfxParamPropDisplayMin, 0, atof(p->dmin));
    if (*p->dmax) g_prop->propSetDouble(props, kOfxParamPropDisplayMax, 0, atof(p->dmax));
  } else if (!strcmp(kind, "bool")) {
    if (g_param->paramDefine(set, kOfxParamTypeBoolean, p->name, &props) != kOfxStatOK) return;
    g_prop->propSetInt(props, kOfxParamPropDefault, 0, !strcmp(p->def, "true"));
  } else if (!strcmp(kind, "choice") && p->nchoices > 0) {
    if (g_param->paramDefine(set, kOfxParamTypeChoice, p->name, &props) != kOfxStatOK) return;
    int def = 0;
    for (int i = 0; i < p->nchoices; i++) {
      g_prop->propSetString(props, kOfxParamPropChoiceOption, i, p->choices[i]);
      if (!strcmp(p->choices[i], p->def)) def = i;
    }
    g_prop->propSetInt(props, kOfxParamPropDefault, 0, def);
  } else { /* str, and list as comma-separated text */
    if (g_param->paramDefine(set, kOfxParamTypeString, p->name, &props) != kOfxStatOK) return;
    g_prop->propSetString(props, kOfxParamPropDefault, 0, p->def);
    g_prop->propSetString(props, kOfxParamPropStringMode, 0, kOfxParamStringIsSingleLine);
  }
  set_label(props, p->name, p->doc);
}

static OfxStatus on_describe_in_context(NodeDesc *n, OfxImageEffectHandle effect) {
  for (int k = 0; k < node_clips(n); k++) define_clip(effect, input_clip_name(n, k), k >= n->inputs);
  define_clip(effect, kOfxImageEffectOutputClipName, 0);
  OfxParamSetHandle set;
  if (g_fx->getParamSet(effect, &set) != kOfxStatOK) return kOfxStatErrBadHandle;
  if (n->inputs == 2) {
    OfxPropertySetHandle props;
    if (g_param->paramDefine(set, kOfxParamTypeDouble, kOfxImageEffectTransitionParamName, &props) == kOfxStatOK) {
      g_prop->propSetDouble(props, kOfxParamPropDefault, 0, 0.5);
      g_prop->propSetDouble(props, kOfxParamPropMin, 0, 0.0);
      g_prop->propSetDouble(props, kOfxParamPropMax, 0, 1.0);
      g_prop->propSetDouble(props, kOfxParamPropDisplayMin, 0, 0.0);
      g_prop->propSetDouble(props, kOfxParamPropDisplayMax, 0, 1.0);
      g_prop->propSetString(props, kOfxPropLabel, 0, "Transition");
      /* the transition context requires this parameter; hide it where it drives nothing */
      if (!*n->tparam) g_prop->propSetInt(props, kOfxParamPropSecret, 0, 1);
    }
  }
  for (int j = 0; j < n->nparams; j++) define_param(set, &n->params[j]);
  return kOfxStatOK;
}

/* ---- instances ---------------------------------------------------------------------------- */
static pthread_mutex_t g_instances_lock = PTHREAD_MUTEX_INITIALIZER;

static Instance *get_instance(OfxImageEffectHandle effect) {
  OfxPropertySetHandle props;
  void *data = NULL;
  if (g_fx->getPropertySet(effect, &props) != kOfxStatOK) return NULL;
  if (g_prop->propGetPointer(props, kOfxPropInstanceData, 0, &data) != kOfxStatOK) return NULL;
  Instance *inst = data;
  if (inst) inst->effect = effect;
  return inst;
}

/* Every action that uses an instance holds a reference, so DestroyInstance (even one a host
 * sends while a render runs) frees nothing, shared memory included, before they return. */
static int instance_enter(Instance *inst) {
  pthread_mutex_lock(&inst->lock);
  int ok = !inst->destroyed;
  if (ok) inst->active++;
  pthread_mutex_unlock(&inst->lock);
  return ok;
}

static void instance_leave(Instance *inst) {
  pthread_mutex_lock(&inst->lock);
  if (--inst->active == 0) pthread_cond_broadcast(&inst->idle);
  pthread_mutex_unlock(&inst->lock);
}

static OfxStatus on_create_instance(NodeDesc *n, OfxImageEffectHandle effect) {
  Instance *inst = calloc(1, sizeof *inst);
  if (!inst) return kOfxStatErrMemory;
  inst->params = calloc((size_t)(n->nparams > 0 ? n->nparams : 1), sizeof(OfxParamHandle));
  if (!inst->params) {
    free(inst);
    return kOfxStatErrMemory;
  }
  inst->node = n;
  inst->effect = effect;
  pthread_mutex_init(&inst->lock, NULL);
  pthread_cond_init(&inst->idle, NULL);
  /* pid, this copy of the library (a host may load two bundles; a crashed host's buffers may
   * outlive it under a reused pid) and a counter: unique shared-memory and instance names */
  unsigned token = (unsigned)(((uintptr_t)&g_instance_counter) >> 4) ^ (unsigned)time(NULL);
  snprintf(inst->id, sizeof inst->id, "%d-%x-%u", (int)getpid(), token & 0xffffffu,
           __atomic_add_fetch(&g_instance_counter, 1, __ATOMIC_SEQ_CST));
  for (int k = 0; k < node_clips(n); k++) g_fx->clipGetHandle(effect, input_clip_name(n, k), &inst->inputs[k], NULL);
  g_fx->clipGetHandle(effect, kOfxImageEffectOutputClipName, &inst->output, NULL);
  OfxParamSetHandle set;
  if (g_fx->getParamSet(effect, &set) == kOfxStatOK) {
    for (int j = 0; j < n->nparams; j++) g_param->paramGetHandle(set, n->params[j].name, &inst->params[j], NULL);
    if (n->inputs == 2) g_param->paramGetHandle(set, kOfxImageEffectTransitionParamName, &inst->transition, NULL);
  }
  OfxPropertySetHandle props;
  g_fx->getPropertySet(effect, &props);
  g_prop->propSetPointer(props, kOfxPropInstanceData, 0, inst);
  return kOfxStatOK;
}

/* Unmap and remove idle buffers (all of them with keep 0); call with the lock held. */
static void pool_trim(Instance *inst, int keep) {
  int idle = 0;
  for (ShmBuf **pp = &inst->pool; *pp;) {
    ShmBuf *b = *pp;
    if (!b->busy && ++idle > keep) {
      *pp = b->next;
      vfx_shm_destroy(b->name, b->ptr, b->size);
      free(b);
    } else {
      pp = &b->next;
    }
  }
}

static void size_cache_clear(Instance *inst) {
  for (int i = 0; i < SIZE_CACHE; i++) {
    free(inst->sizes[i].key);
    inst->sizes[i].key = NULL;
  }
}

/* Tell the server to drop this instance's node (models, chunk caches); it is rebuilt from
 * the next request if needed. Never starts a server. */
static void forget_on_server(Instance *inst) {
  char err[256];
  vfx_buf req;
  vfx_reply rep;
  vfx_buf_init(&req, "forget");
  vfx_buf_field(&req, "instance", inst->id);
  if (vfx_request(&req, &rep, 0, NULL, NULL, NULL, err, sizeof err) == VFX_OK) vfx_reply_free(&rep);
  vfx_buf_free(&req);
}

/* kOfxActionPurgeCaches: the host is short of memory. Free idle buffers and server state. */
static OfxStatus on_purge_caches(Instance *inst) {
  forget_on_server(inst);
  pthread_mutex_lock(&inst->lock);
  pool_trim(inst, 0);
  inst->peak = inst->busy;
  size_cache_clear(inst);
  inst->sent_count = inst->sent_next = 0;
  pthread_mutex_unlock(&inst->lock);
  return kOfxStatOK;
}

/* Renders still running (a host that destroys during a render) see `destroyed` as an abort;
 * the instance and its shared memory are freed only when the last of them has returned. */
static OfxStatus on_destroy_instance(OfxImageEffectHandle effect) {
  pthread_mutex_lock(&g_instances_lock);
  Instance *inst = get_instance(effect);
  OfxPropertySetHandle props;
  if (inst && g_fx->getPropertySet(effect, &props) == kOfxStatOK)
    g_prop->propSetPointer(props, kOfxPropInstanceData, 0, NULL);
  if (inst) __atomic_store_n(&inst->destroyed, 1, __ATOMIC_SEQ_CST);
  pthread_mutex_unlock(&g_instances_lock);
  if (!inst) return kOfxStatOK;
  pthread_mutex_lock(&inst->lock);
  while (inst->active > 0) pthread_cond_wait(&inst->idle, &inst->lock);
  pool_trim(inst, 0);
  size_cache_clear(inst);
  pthread_mutex_unlock(&inst->lock);
  forget_on_server(inst);
  pthread_cond_destroy(&inst->idle);
  pthread_mutex_destroy(&inst->lock);
  free(inst->params);
  free(inst);
  return kOfxStatOK;
}

static void pool_return(Instance *inst, ShmBuf *b) {
  pthread_mutex_lock(&inst->lock);
  b->busy = 0;
  inst->busy--;
  if (!b->ptr) { /* never mapped: drop it */
    for (ShmBuf **pp = &inst->pool; *pp; pp = &(*pp)->next)
      if (*pp == b) {
        *pp = b->next;
        free(b);
        break;
      }
  }
  /* a host that renders N frames at once keeps N buffers (re-creating large shared memory
   * costs page faults on every render) */
  pool_trim(inst, inst->peak > POOL_KEEP ? inst->peak : POOL_KEEP);
  pthread_mutex_unlock(&inst->lock);
}

/* Shared-memory buffers: one per running render (any number), reused across renders, grown
 * on demand; POOL_KEEP idle ones stay mapped. */
static ShmBuf *pool_acquire(Instance *inst, size_t need, char *err, size_t errn) {
  pthread_mutex_lock(&inst->lock);
  ShmBuf *pick = NULL;
  for (ShmBuf *b = inst->pool; b && !pick; b = b->next)
    if (!b->busy && b->size >= need) pick = b;
  for (ShmBuf *b = inst->pool; b && !pick; b = b->next)
    if (!b->busy) pick = b;
  if (!pick) {
    pick = calloc(1, sizeof *pick);
    if (!pick) {
      pthread_mutex_unlock(&inst->lock);
      snprintf(err, errn, "out of memory");
      return NULL;
    }
    pick->next = inst->pool;
    inst->pool = pick;
  }
  pick->busy = 1; /* reserved; the mapping is made outside the lock */
  if (++inst->busy > inst->peak) inst->peak = inst->busy;
  unsigned gen = ++inst->gen;
  pthread_mutex_unlock(&inst->lock);
  if (!pick->ptr || pick->size < need) {
    if (pick->ptr) vfx_shm_destroy(pick->name, pick->ptr, pick->size);
    pick->ptr = NULL;
    pick->size = 0;
    size_t size = need + need / 8; /* headroom so slightly larger frames reuse it */
    snprintf(pick->name, sizeof pick->name, "/vidfx-%s-%s-%u", vfx_user_tag(), inst->id, gen);
    void *ptr = vfx_shm_create(pick->name, size, err, errn);
    if (!ptr) {
      pool_return(inst, pick);
      return NULL;
    }
    pick->ptr = ptr;
    pick->size = size;
  }
  return pick;
}


/* ---- the live server against the manifest ------------------------------------------------- */
/* Before a node's first request, compare the server's description of it (a hash of its
 * inputs and parameters) with the manifest's: a server of another vidfx version would
 * otherwise silently render something else. Only a match is remembered (a replaced server is
 * checked again); concurrent first checks may both ask, which is harmless. Returns VFX_OK or
 * an error with err set. */
static int check_server_node(NodeDesc *n, char *err, size_t errn) {
  if (__atomic_load_n(&n->checked, __ATOMIC_SEQ_CST) == 1) return VFX_OK;
  vfx_buf req;
  vfx_reply rep;
  vfx_buf_init(&req, "nodes");
  int rc = request(&req, &rep, err, errn);
  vfx_buf_free(&req);
  if (rc != VFX_OK) return rc;
  const char *count = vfx_reply_get(&rep, "count");
  int found = 0; /* 0: no such node, 1: same, -1: different */
  for (int i = 0; count && i < atoi(count) && !found; i++) {
    char key[64];
    snprintf(key, sizeof key, "node.%d.name", i);
    const char *name = vfx_reply_get(&rep, key);
    if (!name || strcmp(name, n->name) != 0) continue;
    snprintf(key, sizeof key, "node.%d.hash", i);
    const char *hash = vfx_reply_get(&rep, key);
    found = hash && !strcmp(hash, n->hash) ? 1 : -1;
  }
  vfx_reply_free(&rep);
  if (found == 1) {
    __atomic_store_n(&n->checked, 1, __ATOMIC_SEQ_CST);
    return VFX_OK;
  }
  const char *version = vfx_reply_get(&g_nodes_reply, "version");
  snprintf(err, errn,
           "the running vidfx server %s node %s%s (plugin built with vidfx %s; another version?); rebuild the "
           "plugin with `vidfx ofx build` or stop the server (`vidfx serve --stop`)",
           found == 0 ? "has no" : "describes a different", n->name,
           found == 0 ? "" : " than this plugin's manifest", version ? version : "?");
  return VFX_EOTHER;
}

/* ---- clips: pixel aspect ratio, render scale, premultiplication --------------------------- */
static double clip_par(OfxImageClipHandle clip) {
  OfxPropertySetHandle cp;
  double par = 1.0;
  if (clip && g_fx->clipGetPropertySet(clip, &cp) == kOfxStatOK) g_prop->propGetDouble(cp, kOfxImagePropPixelAspectRatio, 0, &par);
  return par > 0 ? par : 1.0;
}

/* The clip's kOfxImageEffectPropPreMultiplication is `state` (opaque, premultiplied...). */
static int clip_alpha_is(OfxImageClipHandle clip, const char *state) {
  OfxPropertySetHandle cp;
  char *v = NULL;
  if (clip && g_fx->clipGetPropertySet(clip, &cp) == kOfxStatOK)
    g_prop->propGetString(cp, kOfxImageEffectPropPreMultiplication, 0, &v);
  return v && !strcmp(v, state);
}

static int clip_premultiplied(OfxImageClipHandle clip) { return clip_alpha_is(clip, kOfxImagePreMultiplied); }

/* The render scale of an action (1, 1 when the host gives none). */
static void action_scale(OfxPropertySetHandle in, double scale[2]) {
  scale[0] = scale[1] = 1.0;
  if (in) g_prop->propGetDoubleN(in, kOfxImageEffectPropRenderScale, 2, scale);
  if (!(scale[0] > 0 && scale[0] <= 1)) scale[0] = 1.0;
  if (!(scale[1] > 0 && scale[1] <= 1)) scale[1] = 1.0;
}

/* Full-resolution pixel size of an input (its RoD is in canonical coordinates: x is
 * stretched by the pixel aspect ratio). */
static int input_full_size(Instance *inst, int k, double time, OfxRectD *rod, int *w, int *h) {
  if (!inst->inputs[k] || g_fx->clipGetRegionOfDefinition(inst->inputs[k], time, rod) != kOfxStatOK) return -1;
  *w = (int)lround((rod->x2 - rod->x1) / clip_par(inst->inputs[k]));
  *h = (int)lround(rod->y2 - rod->y1);
  return *w > 0 && *h > 0 ? 0 : -1;
}

/* Input clips to describe to the server at a time: the required ones, plus the mask clip when
 * the host says it is connected and it has a region of definition (hosts such as Resolve say
 * "connected" of an empty optional clip: a render drops the mask again if it gives no image;
 * the server decides by the node's mask switch whether the node gets it). */
static int sent_inputs(Instance *inst, double time) {
  NodeDesc *n = inst->node;
  if (!*n->mask || !inst->inputs[n->inputs]) return n->inputs;
  OfxPropertySetHandle cp;
  int connected = 1, w, h;
  OfxRectD rod;
  if (g_fx->clipGetPropertySet(inst->inputs[n->inputs], &cp) == kOfxStatOK)
    g_prop->propGetInt(cp, kOfxImageClipPropConnected, 0, &connected);
  if (!connected || input_full_size(inst, n->inputs, time, &rod, &w, &h) != 0) return n->inputs;
  return n->inputs + 1;
}

/* The fields that describe an instance at a time: node, id, parameter values, rate, and the
 * ranges of the first `nin` input clips. */
static void add_instance_fields(Instance *inst, vfx_buf *b, double time, int nin) {
  NodeDesc *n = inst->node;
  vfx_buf_field(b, "instance", inst->id);
  vfx_buf_field(b, "node", n->name);
  char key[160], val[256];
  for (int j = 0; j < n->nparams; j++) {
    ParamDesc *p = &n->params[j];
    OfxParamHandle h = inst->params[j];
    if (!h) continue;
    snprintf(key, sizeof key, "param.%s", p->name);
    if (!strcmp(p->kind, "int")) {
      int v = 0;
      g_param->paramGetValueAtTime(h, time, &v);
      snprintf(val, sizeof val, "%d", v);
      vfx_buf_field(b, key, val);
    } else if (!strcmp(p->kind, "float")) {
      double v = 0;
      g_param->paramGetValueAtTime(h, time, &v);
      snprintf(val, sizeof val, "%.17g", v);
      vfx_buf_field(b, key, val);
    } else if (!strcmp(p->kind, "bool")) {
      int v = 0;
      g_param->paramGetValueAtTime(h, time, &v);
      vfx_buf_field(b, key, v ? "true" : "false");
    } else if (!strcmp(p->kind, "choice") && p->nchoices > 0) {
      int v = 0;
      g_param->paramGetValueAtTime(h, time, &v);
      if (v < 0 || v >= p->nchoices) v = 0;
      vfx_buf_field(b, key, p->choices[v]);
    } else {
      char *v = NULL;
      g_param->paramGetValueAtTime(h, time, &v);
      vfx_buf_field(b, key, v ? v : "");
    }
  }
  if (inst->transition && *n->tparam) {
    double v = 0;
    g_param->paramGetValueAtTime(inst->transition, time, &v);
    snprintf(key, sizeof key, "param.%s", n->tparam);
    snprintf(val, sizeof val, "%.17g", v);
    vfx_buf_field(b, key, val);
  }
  double fps = 0;
  for (int k = 0; k < nin; k++) {
    OfxPropertySetHandle cp;
    double range[2] = {time - 1e6, time + 1e6};
    if (inst->inputs[k] && g_fx->clipGetPropertySet(inst->inputs[k], &cp) == kOfxStatOK) {
      if (k == 0) g_prop->propGetDouble(cp, kOfxImageEffectPropFrameRate, 0, &fps);
      g_prop->propGetDoubleN(cp, kOfxImageEffectPropFrameRange, 2, range);
    }
    snprintf(key, sizeof key, "range.%d", k);
    vfx_buf_fieldf(b, key, "%.0f,%.0f", floor(range[0]), floor(range[1]));
  }
  /* the effect's own span: a cut transition's length (see CUT_TRANSITIONS in the server) */
  OfxPropertySetHandle op;
  double orange[2];
  if (inst->output && g_fx->clipGetPropertySet(inst->output, &op) == kOfxStatOK &&
      g_prop->propGetDoubleN(op, kOfxImageEffectPropFrameRange, 2, orange) == kOfxStatOK)
    vfx_buf_fieldf(b, "range.out", "%.0f,%.0f", floor(orange[0]), floor(orange[1]));
  vfx_buf_fieldf(b, "fps", "%.10g", fps > 0 ? fps : 25.0);
}

/* An action failed (rc: a VFX_ code): show `err` through the host's message suite (and as a
 * persistent message where the host has one), except after a host abort, which is not an
 * error to report. */
static OfxStatus action_failed(Instance *inst, int rc, const char *err) {
  if (rc == VFX_EABORT) return kOfxStatFailed;
  char text[1200];
  snprintf(text, sizeof text, "vidfx %s: %s", inst->node->name, err);
  post_error(inst->effect, text);
  post_persistent(inst->effect, &inst->persistent, text);
  return kOfxStatFailed;
}

static void add_scale(vfx_buf *b, const double scale[2]) {
  if (scale[0] != 1.0 || scale[1] != 1.0) vfx_buf_fieldf(b, "scale", "%.17g,%.17g", scale[0], scale[1]);
}

/* Output size for inputs of the given sizes at a render scale (asks the server once per
 * description; the answers for a few descriptions are cached, e.g. full and proxy scale);
 * `alpha`, when given, gets where the output's alpha comes from ('n', 's', 'o'). */
static int query_out_size(Instance *inst, double time, int nin, const int *w, const int *h, const double scale[2],
                          int *ow, int *oh, char *alpha, char *err, size_t errn) {
  int rc = check_server_node(inst->node, err, errn);
  if (rc != VFX_OK) return rc;
  vfx_buf req;
  vfx_buf_init(&req, "info");
  add_instance_fields(inst, &req, time, nin);
  add_scale(&req, scale);
  char key[32];
  for (int k = 0; k < nin; k++) {
    snprintf(key, sizeof key, "size.%d", k);
    vfx_buf_fieldf(&req, key, "%d,%d", w[k], h[k]);
  }
  if (req.failed) {
    vfx_buf_free(&req);
    snprintf(err, errn, "out of memory");
    return VFX_EOTHER;
  }
  int hit = 0;
  pthread_mutex_lock(&inst->lock);
  for (int i = 0; i < SIZE_CACHE && !hit; i++)
    if (inst->sizes[i].key && !strcmp(inst->sizes[i].key, req.data)) {
      hit = 1;
      *ow = inst->sizes[i].w;
      *oh = inst->sizes[i].h;
      if (alpha) *alpha = inst->sizes[i].alpha;
    }
  pthread_mutex_unlock(&inst->lock);
  if (hit) {
    vfx_buf_free(&req);
    return VFX_OK;
  }
  vfx_reply rep;
  rc = request(&req, &rep, err, errn);
  if (rc == VFX_OK) {
    const char *s = vfx_reply_get(&rep, "size");
    const char *a = vfx_reply_get(&rep, "alpha");
    char kind = a && *a ? a[0] : 's';
    if (!s || sscanf(s, "%d,%d", ow, oh) != 2) {
      snprintf(err, errn, "malformed info reply");
      rc = VFX_EOTHER;
    } else {
      if (alpha) *alpha = kind;
      pthread_mutex_lock(&inst->lock);
      SizeEntry *e = &inst->sizes[inst->size_next];
      inst->size_next = (inst->size_next + 1) % SIZE_CACHE;
      free(e->key);
      e->key = strdup(req.data);
      e->w = *ow;
      e->h = *oh;
      e->alpha = kind;
      pthread_mutex_unlock(&inst->lock);
    }
    vfx_reply_free(&rep);
  }
  vfx_buf_free(&req);
  return rc;
}

/* ---- region of definition / interest, frames needed, clip preferences --------------------- */
/* In canonical coordinates (OFX): x = pixel x * PAR / render scale. The node is asked about
 * full-resolution pixel sizes, so the RoD does not depend on the render scale. */
static OfxStatus on_region_of_definition(Instance *inst, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  double time = 0;
  g_prop->propGetDouble(in, kOfxPropTime, 0, &time);
  OfxRectD rod[MAX_INPUTS];
  int w[MAX_INPUTS], h[MAX_INPUTS];
  int nin = sent_inputs(inst, time);
  for (int k = 0; k < nin; k++)
    if (input_full_size(inst, k, time, &rod[k], &w[k], &h[k]) != 0) return kOfxStatReplyDefault;
  int ow, oh;
  char err[1024];
  const double one[2] = {1.0, 1.0};
  int rc = query_out_size(inst, time, nin, w, h, one, &ow, &oh, NULL, err, sizeof err);
  if (rc != VFX_OK) return action_failed(inst, rc, err);
  double par = clip_par(inst->inputs[0]);
  double fx = (double)ow / w[0], fy = (double)oh / h[0];
  double r[4] = {rod[0].x1 * fx, rod[0].y1 * fy, rod[0].x1 * fx + ow * par, rod[0].y1 * fy + oh};
  g_prop->propSetDoubleN(out, kOfxImageEffectPropRegionOfDefinition, 4, r);
  clear_persistent(inst->effect, &inst->persistent);
  return kOfxStatOK;
}

static OfxStatus on_regions_of_interest(Instance *inst, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  /* Nodes work on whole frames: ask for each input's full region of definition (canonical
   * coordinates, so the same at any render scale). */
  double time = 0;
  g_prop->propGetDouble(in, kOfxPropTime, 0, &time);
  for (int k = 0; k < node_clips(inst->node); k++) {
    OfxRectD rod;
    if (!inst->inputs[k] || g_fx->clipGetRegionOfDefinition(inst->inputs[k], time, &rod) != kOfxStatOK) continue;
    char name[128];
    snprintf(name, sizeof name, "%s%s", kVidfxClipRoIPrefix, input_clip_name(inst->node, k));
    double r[4] = {rod.x1, rod.y1, rod.x2, rod.y2};
    g_prop->propSetDoubleN(out, name, 4, r);
  }
  return kOfxStatOK;
}

/* Ask the server which frames output `time` needs from the first `nin` input clips; fills
 * times[k] (malloc'd) and counts[k]. The mask clip gets none (count 0) when the server does not
 * want it (its switch is off). The server answers from the node's declared window without
 * waiting for a running render. */
static int query_frames(Instance *inst, double time, int nin, double **times, int *counts, char *err, size_t errn) {
  int rc = check_server_node(inst->node, err, errn);
  if (rc != VFX_OK) return rc;
  vfx_buf req;
  vfx_buf_init(&req, "frames");
  add_instance_fields(inst, &req, time, nin);
  vfx_buf_fieldf(&req, "time", "%.17g", time);
  for (int k = 0; k < nin; k++) { /* lets the server configure the node first */
    OfxRectD rod;
    int w, h;
    if (input_full_size(inst, k, time, &rod, &w, &h) == 0) {
      char key[32];
      snprintf(key, sizeof key, "size.%d", k);
      vfx_buf_fieldf(&req, key, "%d,%d", w, h);
    }
  }
  vfx_reply rep;
  rc = request(&req, &rep, err, errn);
  vfx_buf_free(&req);
  if (rc != VFX_OK) return rc;
  for (int k = 0; k < nin; k++) {
    char key[32];
    snprintf(key, sizeof key, "frames.%d", k);
    const char *s = vfx_reply_get(&rep, key);
    int n = 0;
    if (k >= inst->node->inputs && !(s && *s)) { /* the mask clip, not wanted */
      times[k] = NULL;
      counts[k] = 0;
      continue;
    }
    double *t = NULL;
    if (s && *s) {
      int cap = 1;
      for (const char *p = s; *p; p++) cap += (*p == ',');
      t = malloc(sizeof(double) * (size_t)cap);
      if (t) {
        const char *p = s;
        while (*p && n < cap) {
          char *end;
          t[n++] = strtod(p, &end);
          if (*end != ',') break;
          p = end + 1;
        }
      }
    }
    if (!t) {
      t = malloc(sizeof(double));
      if (t) t[n++] = time;
    }
    times[k] = t;
    counts[k] = t ? n : 0;
  }
  vfx_reply_free(&rep);
  return VFX_OK;
}

static OfxStatus on_frames_needed(Instance *inst, OfxPropertySetHandle in, OfxPropertySetHandle out) {
  double time = 0;
  g_prop->propGetDouble(in, kOfxPropTime, 0, &time);
  double *times[MAX_INPUTS] = {0};
  int counts[MAX_INPUTS] = {0};
  char err[1024];
  int nin = sent_inputs(inst, time);
  int rc = query_frames(inst, time, nin, times, counts, err, sizeof err);
  if (rc != VFX_OK) return action_failed(inst, rc, err);
  for (int k = 0; k < nin; k++) {
    if (counts[k] == 0) continue; /* the mask clip, not used: the host's default */
    /* merge consecutive frames into (first, last) ranges */
    double *ranges = malloc(sizeof(double) * 2 * (size_t)(counts[k] + 1));
    int nr = 0;
    for (int i = 0; ranges && i < counts[k]; i++) {
      if (nr && times[k][i] == ranges[2 * nr - 1] + 1) {
        ranges[2 * nr - 1] = times[k][i];
      } else {
        ranges[2 * nr] = ranges[2 * nr + 1] = times[k][i];
        nr++;
      }
    }
    char name[128];
    snprintf(name, sizeof name, "%s%s", kVidfxClipFrameRangePrefix, input_clip_name(inst->node, k));
    if (ranges && nr) g_prop->propSetDoubleN(out, name, 2 * nr, ranges);
    free(ranges);
    free(times[k]);
  }
  return kOfxStatOK;
}

/* What the output's alpha means: the node's own (RGBA or a matte: straight), the source's
 * (premultiplied again after a straight-alpha node if the source was), or none (opaque). */
static const char *output_premult(Instance *inst, char alpha) {
  if (alpha == 'n') return kOfxImageUnPreMultiplied;
  if (alpha == 'o' || clip_alpha_is(inst->inputs[0], kOfxImageOpaque)) return kOfxImageOpaque;
  return clip_premultiplied(inst->inputs[0]) ? kOfxImagePreMultiplied : kOfxImageUnPreMultiplied;
}

/* GetClipPreferences: float RGBA everywhere, the output keeps the input's pixel aspect ratio,
 * and its premultiplication follows the node and its output mode (asks the server). */
static OfxStatus on_clip_preferences(Instance *inst, OfxPropertySetHandle out) {
  char name[160];
  double range[2] = {0, 0}, time;
  OfxPropertySetHandle cp;
  if (inst->inputs[0] && g_fx->clipGetPropertySet(inst->inputs[0], &cp) == kOfxStatOK)
    g_prop->propGetDoubleN(cp, kOfxImageEffectPropFrameRange, 2, range);
  time = range[0];
  int nclips = node_clips(inst->node);
  for (int k = 0; k <= nclips; k++) {
    const char *clip = k < nclips ? input_clip_name(inst->node, k) : kOfxImageEffectOutputClipName;
    snprintf(name, sizeof name, "%s%s", kVidfxClipComponentsPrefix, clip);
    if (k == nclips || k < inst->node->inputs) /* a mask clip: RGBA or Alpha, as the host has it */
      g_prop->propSetString(out, name, 0, kOfxImageComponentRGBA);
    snprintf(name, sizeof name, "%s%s", kVidfxClipDepthPrefix, clip);
    g_prop->propSetString(out, name, 0, kOfxBitDepthFloat);
  }
  snprintf(name, sizeof name, "%s%s", kVidfxClipPARPrefix, kOfxImageEffectOutputClipName);
  g_prop->propSetDouble(out, name, 0, clip_par(inst->inputs[0]));
  g_prop->propSetInt(out, kOfxImageEffectFrameVarying, 0, 1);
  int w[MAX_INPUTS], h[MAX_INPUTS], ow, oh;
  OfxRectD rod;
  int nin = sent_inputs(inst, time);
  for (int k = 0; k < nin; k++)
    if (input_full_size(inst, k, time, &rod, &w[k], &h[k]) != 0) return kOfxStatOK; /* nothing connected yet */
  char alpha = 's', err[1024];
  const double one[2] = {1.0, 1.0};
  int rc = query_out_size(inst, time, nin, w, h, one, &ow, &oh, &alpha, err, sizeof err);
  if (rc != VFX_OK) return action_failed(inst, rc, err);
  g_prop->propSetString(out, kOfxImageEffectPropPreMultiplication, 0, output_premult(inst, alpha));
  return kOfxStatOK;
}

/* ---- render ------------------------------------------------------------------------------- */
typedef struct Image {
  OfxPropertySetHandle handle;
  char *data;
  OfxRectI bounds;
  int row_bytes, comps; /* comps: 4 (RGBA), 3 (RGB) or 1 (Alpha, mask clips) */
  double time;
  size_t offset;   /* where its copy lives in the shared buffer */
  uint64_t fp;     /* content fingerprint (valid when hashed) */
  int hashed;
  int reuse;       /* the server already holds these pixels: not copied */
  int unpremult;   /* premultiplied host pixels for a straight-alpha node: divided by alpha in the copy */
} Image;

/* ---- content fingerprints: the server keeps recent input frames per instance, so the plugin
 * sends pixels only for frames it has not sent with the same content (a temporal window moves
 * by one frame per render; a parameter tweak re-renders the same inputs). ------------------ */
#define HASH_BANDS 8 /* fixed, so the fingerprint does not depend on the thread count */
typedef struct HashJob {
  const struct Image *img;
  uint64_t band[HASH_BANDS];
} HashJob;

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

typedef struct HashState { uint64_t a, b, c, d; } HashState;

static void hash_init(HashState *s, unsigned int band) {
  s->a = 0x9E3779B97F4A7C15ull ^ band;
  s->b = 0xC2B2AE3D27D4EB4Full;
  s->c = 0x165667B19E3779F9ull;
  s->d = 0x27D4EB2F165667C5ull;
}

static void hash_row(HashState *s, const unsigned char *p, size_t row_len) {
  const uint64_t M = 0x9E3779B97F4A7C15ull;
  uint64_t a = s->a, b = s->b, c = s->c, d = s->d;
  size_t i = 0;
  for (; i + 32 <= row_len; i += 32) {
    uint64_t w0, w1, w2, w3;
    memcpy(&w0, p + i, 8);
    memcpy(&w1, p + i + 8, 8);
    memcpy(&w2, p + i + 16, 8);
    memcpy(&w3, p + i + 24, 8);
    a = rotl64(a ^ w0, 31) * M;
    b = rotl64(b ^ w1, 31) * M;
    c = rotl64(c ^ w2, 31) * M;
    d = rotl64(d ^ w3, 31) * M;
  }
  for (; i + 4 <= row_len; i += 4) {
    uint32_t v;
    memcpy(&v, p + i, 4);
    a = rotl64(a ^ v, 31) * M;
  }
  s->a = a, s->b = b, s->c = c, s->d = d;
}

static uint64_t hash_final(const HashState *s) {
  return rotl64(s->a, 1) ^ rotl64(s->b, 7) ^ rotl64(s->c, 12) ^ rotl64(s->d, 18);
}

/* Band y range of an image of height h. */
static void band_rows(int h, unsigned int band, int *y0, int *y1) {
  *y0 = (int)((long long)h * band / HASH_BANDS);
  *y1 = (int)((long long)h * (band + 1) / HASH_BANDS);
}

static OfxStatus hash_band(unsigned int index, unsigned int count, void *arg) {
  HashJob *j = arg;
  const struct Image *img = j->img;
  int h = img->bounds.y2 - img->bounds.y1, w = img->bounds.x2 - img->bounds.x1;
  size_t row_len = (size_t)w * img->comps * sizeof(float);
  for (unsigned int band = index; band < HASH_BANDS; band += count) {
    HashState s;
    hash_init(&s, band);
    int y0, y1;
    band_rows(h, band, &y0, &y1);
    for (int y = y0; y < y1; y++)
      hash_row(&s, (const unsigned char *)img->data + (ptrdiff_t)y * img->row_bytes, row_len);
    j->band[band] = hash_final(&s);
  }
  return kOfxStatOK;
}

static uint64_t combine_bands(const struct Image *img, const uint64_t *band) {
  uint64_t h = 0x84222325CBF29CE4ull ^ (uint64_t)(img->bounds.x2 - img->bounds.x1) ^
               ((uint64_t)(img->bounds.y2 - img->bounds.y1) << 32) ^ (uint64_t)img->comps << 60 ^
               (uint64_t)img->unpremult << 59; /* the server holds what was sent, converted or not */
  for (int i = 0; i < HASH_BANDS; i++) h = rotl64(h ^ band[i], 27) * 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 29);
}

static uint64_t fingerprint(const struct Image *img) {
  HashJob job;
  memset(&job, 0, sizeof job);
  job.img = img;
  unsigned int cpus = 1;
  if (g_threads && g_threads->multiThreadNumCPUs && g_threads->multiThreadNumCPUs(&cpus) != kOfxStatOK) cpus = 1;
  if (cpus > HASH_BANDS) cpus = HASH_BANDS;
  if (!(cpus > 1 && g_threads->multiThread && g_threads->multiThread(hash_band, cpus, &job) == kOfxStatOK))
    hash_band(0, 1, &job);
  return combine_bands(img, job.band);
}

/* Whether this instance sent a frame at this clip and time before (content unknown). */
static int sent_time(Instance *inst, int clip, double time) {
  int found = 0;
  pthread_mutex_lock(&inst->lock);
  for (int i = 0; i < inst->sent_count && !found; i++)
    found = inst->sent[i].clip == clip && inst->sent[i].time == time;
  pthread_mutex_unlock(&inst->lock);
  return found;
}

static int sent_has(Instance *inst, int clip, const Image *img) {
  int found = 0;
  pthread_mutex_lock(&inst->lock);
  for (int i = 0; i < inst->sent_count && !found; i++) {
    SentFrame *s = &inst->sent[i];
    found = s->clip == clip && s->time == img->time && s->fp == img->fp;
  }
  pthread_mutex_unlock(&inst->lock);
  return found;
}

static void sent_add(Instance *inst, int clip, const Image *img) {
  pthread_mutex_lock(&inst->lock);
  int slot = -1;
  for (int i = 0; i < inst->sent_count; i++)
    if (inst->sent[i].clip == clip && inst->sent[i].time == img->time) slot = i;
  if (slot < 0) {
    if (inst->sent_count < SENT_MAX) slot = inst->sent_count++;
    else slot = inst->sent_next = (inst->sent_next + 1) % SENT_MAX;
  }
  inst->sent[slot].clip = clip;
  inst->sent[slot].time = img->time;
  inst->sent[slot].fp = img->fp;
  pthread_mutex_unlock(&inst->lock);
}

static int fetch_image(OfxImageClipHandle clip, double time, Image *img, char *err, size_t errn) {
  memset(img, 0, sizeof *img);
  img->time = time;
  if (g_fx->clipGetImage(clip, time, NULL, &img->handle) != kOfxStatOK || !img->handle) {
    snprintf(err, errn, "the host gave no image at frame %g", time);
    img->handle = NULL;
    return -1;
  }
  char *depth = NULL, *comps = NULL;
  void *data = NULL;
  g_prop->propGetString(img->handle, kOfxImageEffectPropPixelDepth, 0, &depth);
  g_prop->propGetString(img->handle, kOfxImageEffectPropComponents, 0, &comps);
  g_prop->propGetPointer(img->handle, kOfxImagePropData, 0, &data);
  g_prop->propGetIntN(img->handle, kOfxImagePropBounds, 4, &img->bounds.x1);
  g_prop->propGetInt(img->handle, kOfxImagePropRowBytes, 0, &img->row_bytes);
  img->data = data;
  img->comps = (comps && !strcmp(comps, kOfxImageComponentRGB)) ? 3 : (comps && !strcmp(comps, kOfxImageComponentAlpha)) ? 1 : 4;
  if (!depth || strcmp(depth, kOfxBitDepthFloat) != 0 || !data ||
      (comps && strcmp(comps, kOfxImageComponentRGBA) && strcmp(comps, kOfxImageComponentRGB) &&
       strcmp(comps, kOfxImageComponentAlpha)) ||
      img->bounds.x2 <= img->bounds.x1 || img->bounds.y2 <= img->bounds.y1) {
    snprintf(err, errn, "unsupported image at frame %g (need float RGBA, got %s %s)", time,
             depth ? depth : "?", comps ? comps : "?");
    g_fx->clipReleaseImage(img->handle);
    img->handle = NULL;
    return -1;
  }
  return 0;
}

static int img_w(const Image *i) { return i->bounds.x2 - i->bounds.x1; }
static int img_h(const Image *i) { return i->bounds.y2 - i->bounds.y1; }

/* Host images are interleaved RGBA (or RGB) with rows bottom-up; the server's frames are
 * planar float32 (R, G, B, A planes, rows top-down), which it can use without reordering. */
/* A copy job split into row bands over the host's threads (or run inline). */
typedef struct CopyJob {
  int kind; /* 0: copy in (host -> planes, hashing the rows as they go), 1: copy out */
  const Image *img;
  float *planes;
  uint64_t band[HASH_BANDS]; /* copy in: the fingerprint's band hashes */
  /* copy out only */
  const Image *out;
  OfxRectI win;
  int ow, oh, ox, oy;
  int premult; /* multiply the colour by alpha (a straight-alpha node, premultiplied output) */
} CopyJob;

static void copy_in_rows(const Image *img, float *dst, int y0, int y1) {
  int w = img_w(img), h = img_h(img);
  size_t plane = (size_t)w * h;
  float *r = dst, *g = dst + plane, *b = dst + 2 * plane, *a = dst + 3 * plane;
  for (int y = y0; y < y1; y++) {
    const float *src = (const float *)(img->data + (ptrdiff_t)(h - 1 - y) * img->row_bytes);
    size_t o = (size_t)y * w;
    if (img->comps == 4 && img->unpremult) {
      for (int x = 0; x < w; x++) {
        float al = src[4 * x + 3], k = al > 0.0f ? 1.0f / al : 1.0f; /* alpha 0: colour kept */
        r[o + x] = src[4 * x] * k;
        g[o + x] = src[4 * x + 1] * k;
        b[o + x] = src[4 * x + 2] * k;
        a[o + x] = al;
      }
    } else if (img->comps == 4) {
      for (int x = 0; x < w; x++) {
        r[o + x] = src[4 * x];
        g[o + x] = src[4 * x + 1];
        b[o + x] = src[4 * x + 2];
        a[o + x] = src[4 * x + 3];
      }
    } else if (img->comps == 1) { /* a mask: the same value in every plane */
      for (int x = 0; x < w; x++) r[o + x] = g[o + x] = b[o + x] = a[o + x] = src[x];
    } else {
      for (int x = 0; x < w; x++) {
        r[o + x] = src[3 * x];
        g[o + x] = src[3 * x + 1];
        b[o + x] = src[3 * x + 2];
        a[o + x] = 1.0f;
      }
    }
  }
}

/* Rows y0..y1 (host pixel coordinates, inside the render window) of the output image from
 * the server's planar result, whose bottom-left pixel sits at (ox, oy). */
static void copy_out_rows(const CopyJob *j, int y0, int y1) {
  const Image *out = j->out;
  const float *res = j->planes;
  int ow = j->ow, oh = j->oh;
  size_t plane = (size_t)ow * oh;
  for (int y = y0; y < y1; y++) {
    float *dst = (float *)(out->data + (ptrdiff_t)(y - out->bounds.y1) * out->row_bytes);
    int ry = oh - 1 - (y - j->oy);
    for (int x = j->win.x1; x < j->win.x2; x++) {
      int rx = x - j->ox;
      float *d = dst + (size_t)(x - out->bounds.x1) * out->comps;
      if (ry < 0 || ry >= oh || rx < 0 || rx >= ow) {
        for (int c = 0; c < out->comps; c++) d[c] = 0.0f;
        continue;
      }
      size_t o = (size_t)ry * ow + rx;
      float k = j->premult ? res[3 * plane + o] : 1.0f;
      d[0] = res[o] * k;
      d[1] = res[plane + o] * k;
      d[2] = res[2 * plane + o] * k;
      if (out->comps == 4) d[3] = res[3 * plane + o];
    }
  }
}


static OfxStatus copy_band(unsigned int index, unsigned int count, void *arg) {
  CopyJob *j = arg;
  if (j->kind == 0) { /* fixed bands, as in fingerprint(), so both give the same value */
    const Image *img = j->img;
    size_t row_len = (size_t)img_w(img) * img->comps * sizeof(float);
    for (unsigned int band = index; band < HASH_BANDS; band += count) {
      HashState s;
      hash_init(&s, band);
      int y0, y1;
      band_rows(img_h(img), band, &y0, &y1);
      for (int hy = y0; hy < y1; hy++) { /* host rows, bottom-up, as fingerprint() reads them */
        int y = img_h(img) - 1 - hy;       /* the server's (top-down) row */
        copy_in_rows(img, j->planes, y, y + 1);
        hash_row(&s, (const unsigned char *)img->data + (ptrdiff_t)hy * img->row_bytes, row_len);
      }
      j->band[band] = hash_final(&s);
    }
    return kOfxStatOK;
  }
  int lo, hi;
  if (j->kind == 0) {
    lo = 0;
    hi = img_h(j->img);
  } else {
    lo = j->win.y1;
    hi = j->win.y2;
  }
  int y0 = lo + (int)((long long)(hi - lo) * index / count);
  int y1 = lo + (int)((long long)(hi - lo) * (index + 1) / count);
  if (j->kind == 0) copy_in_rows(j->img, j->planes, y0, y1);
  else copy_out_rows(j, y0, y1);
  return kOfxStatOK;
}

static void run_copy(CopyJob *j) {
  unsigned int cpus = 1;
  if (g_threads && g_threads->multiThreadNumCPUs && g_threads->multiThreadNumCPUs(&cpus) != kOfxStatOK) cpus = 1;
  if (cpus > 8) cpus = 8; /* memory bandwidth, not cores, limits a copy */
  if (cpus > 1 && g_threads->multiThread && g_threads->multiThread(copy_band, cpus, j) == kOfxStatOK) return;
  copy_band(0, 1, j);
}

static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}


/* One render's state, from the fetched inputs to the copied output; released by render_release. */
typedef struct Render {
  Instance *inst;
  double time;
  OfxRectI win;                /* the host's render window */
  double scale[2];             /* the host's render scale */
  char alpha;                  /* where the output's alpha comes from ('n', 's', 'o') */
  int nin;                     /* input clips sent: the required ones, plus the mask when used */
  double *times[MAX_INPUTS];   /* host times needed from each input (malloc'd) */
  int counts[MAX_INPUTS];
  Image *images[MAX_INPUTS];   /* the fetched frames, counts[k] per input */
  int cur[MAX_INPUTS];         /* index of the image at `time` (or nearest) per input */
  int w[MAX_INPUTS], h[MAX_INPUTS]; /* that image's size */
  int ow, oh;                  /* the output size the server makes from those */
  ShmBuf *buf;                 /* inputs not held by the server, then the output */
  size_t out_off;              /* where the output lives in buf */
  Image out;
  char err[1024];
} Render;

/* Ask the server which frames are needed, fetch them from the host (hashing those sent at
 * the same time before, to see whether the server still holds their content), and ask for the
 * output size. Returns a VFX_ code, with r->err set on failure. */
static int straight_alpha(const NodeDesc *n) { return strcmp(n->alpha, "any") != 0; }

static int fetch_inputs(Render *r) {
  Instance *inst = r->inst;
  r->nin = sent_inputs(inst, r->time);
  int rc = query_frames(inst, r->time, r->nin, r->times, r->counts, r->err, sizeof r->err);
  if (rc != VFX_OK) return rc;
  if (r->nin > inst->node->inputs && r->counts[inst->node->inputs] == 0) r->nin = inst->node->inputs;
  for (int k = 0; k < r->nin; k++) {
    int count = r->counts[k];
    if (count == 0) {
      snprintf(r->err, sizeof r->err, "no frames to render from");
      return VFX_EOTHER;
    }
    r->images[k] = calloc((size_t)count, sizeof(Image));
    if (!r->images[k]) {
      snprintf(r->err, sizeof r->err, "out of memory");
      return VFX_EOTHER;
    }
    for (int i = 0; i < count; i++) {
      Image *im = &r->images[k][i];
      double t = r->times[k][i];
      if (fetch_image(inst->inputs[k], t, im, r->err, sizeof r->err) != 0) {
        if (k < inst->node->inputs) return VFX_EOTHER;
        r->nin = k; /* the mask clip gives no image (an unconnected one): render without it */
        r->err[0] = 0;
        break;
      }
      im->unpremult = straight_alpha(inst->node) && clip_premultiplied(inst->inputs[k]);
      /* a frame time sent before may be held by the server: hash it now to compare contents
       * (a new one is hashed while it is copied) */
      if (sent_time(inst, k, t)) {
        im->fp = fingerprint(im);
        im->hashed = 1;
      }
      if (fabs(t - r->time) < fabs(r->times[k][r->cur[k]] - r->time)) r->cur[k] = i;
    }
    if (k >= r->nin) break;
    r->w[k] = img_w(&r->images[k][r->cur[k]]);
    r->h[k] = img_h(&r->images[k][r->cur[k]]);
  }
  return query_out_size(inst, r->time, r->nin, r->w, r->h, r->scale, &r->ow, &r->oh, &r->alpha, r->err,
                        sizeof r->err);
}

/* Lay out a shared buffer (inputs to send, then the output) and copy the inputs into it,
 * fingerprinting them on the way. With `reuse`, frames the server holds are not copied. */
static int copy_inputs(Render *r, int reuse) {
  Instance *inst = r->inst;
  size_t total = 0;
  for (int k = 0; k < r->nin; k++)
    for (int i = 0; i < r->counts[k]; i++) {
      Image *im = &r->images[k][i];
      im->reuse = reuse && im->hashed && sent_has(inst, k, im);
      im->offset = total;
      if (!im->reuse) total += (size_t)img_w(im) * img_h(im) * 16;
    }
  r->out_off = total;
  total += (size_t)r->ow * r->oh * 16;
  r->buf = pool_acquire(inst, total, r->err, sizeof r->err);
  if (!r->buf) return VFX_EOTHER;
  for (int k = 0; k < r->nin; k++)
    for (int i = 0; i < r->counts[k]; i++) {
      Image *im = &r->images[k][i];
      if (im->reuse) continue;
      CopyJob job = {0};
      job.img = im;
      job.planes = (float *)((char *)r->buf->ptr + im->offset);
      run_copy(&job);
      im->fp = combine_bands(im, job.band);
      im->hashed = 1;
      /* recorded now, not after the reply: a render of a neighbouring frame running at the same
       * time then refers to this copy instead of sending the frame again (if it reaches the
       * server first, it gets `missing` and resends) */
      sent_add(inst, k, im);
    }
  return VFX_OK;
}

/* Send the `render` request for the frames in r->buf and wait (abortable by the host). */
static int request_render(Render *r, vfx_reply *rep) {
  Instance *inst = r->inst;
  char rid[96];
  snprintf(rid, sizeof rid, "%s-r%u", inst->id, __atomic_add_fetch(&g_render_counter, 1, __ATOMIC_SEQ_CST));
  vfx_buf req;
  vfx_buf_init(&req, "render");
  add_instance_fields(inst, &req, r->time, r->nin);
  add_scale(&req, r->scale);
  vfx_buf_fieldf(&req, "time", "%.17g", r->time);
  vfx_buf_field(&req, "id", rid);
  vfx_buf_field(&req, "shm", r->buf->name + 1);
  vfx_buf_fieldf(&req, "shm_size", "%zu", r->buf->size);
  vfx_buf_fieldf(&req, "out", "%d,%d,%zu", r->ow, r->oh, r->out_off);
  for (int k = 0; k < r->nin; k++)
    for (int i = 0; i < r->counts[k]; i++) {
      char key[48];
      const Image *im = &r->images[k][i];
      snprintf(key, sizeof key, "in.%d.%d", k, i);
      long long offset = im->reuse ? -1 : (long long)im->offset; /* -1: use the frame the server holds */
      vfx_buf_fieldf(&req, key, "%.17g,%d,%d,%lld,%016llx", im->time, img_w(im), img_h(im), offset,
                     (unsigned long long)im->fp);
    }
  AbortCtx actx = {inst, inst->effect};
  int rc = vfx_request(&req, rep, VFX_START_WAIT, host_aborted, &actx, rid, r->err, sizeof r->err);
  vfx_buf_free(&req);
  return rc;
}

/* Copy the server's result into the host's output image, inside the render window. */
static int copy_output(Render *r) {
  if (fetch_image(r->inst->output, r->time, &r->out, r->err, sizeof r->err) != 0) return VFX_EOTHER;
  const Image *src0 = &r->images[0][r->cur[0]];
  double fx = (double)r->ow / r->w[0], fy = (double)r->oh / r->h[0];
  const OfxRectI *b = &r->out.bounds;
  CopyJob job = {0};
  job.kind = 1;
  job.out = &r->out;
  job.planes = (float *)((char *)r->buf->ptr + r->out_off);
  job.ow = r->ow;
  job.oh = r->oh;
  job.ox = (int)lround(src0->bounds.x1 * fx);
  job.oy = (int)lround(src0->bounds.y1 * fy);
  /* a straight-alpha node on premultiplied input: premultiply the result again */
  job.premult = straight_alpha(r->inst->node) && r->alpha == 's' && clip_premultiplied(r->inst->inputs[0]);
  job.win.x1 = r->win.x1 > b->x1 ? r->win.x1 : b->x1;
  job.win.x2 = r->win.x2 < b->x2 ? r->win.x2 : b->x2;
  job.win.y1 = r->win.y1 > b->y1 ? r->win.y1 : b->y1;
  job.win.y2 = r->win.y2 < b->y2 ? r->win.y2 : b->y2;
  if (job.win.x2 > job.win.x1 && job.win.y2 > job.win.y1) run_copy(&job);
  return VFX_OK;
}

static void render_release(Render *r) {
  if (r->out.handle) g_fx->clipReleaseImage(r->out.handle);
  for (int k = 0; k < MAX_INPUTS; k++) { /* a dropped mask clip's fetched images too */
    if (r->images[k])
      for (int i = 0; i < r->counts[k]; i++)
        if (r->images[k][i].handle) g_fx->clipReleaseImage(r->images[k][i].handle);
    free(r->images[k]);
    free(r->times[k]);
  }
  if (r->buf) pool_return(r->inst, r->buf);
}

static OfxStatus on_render(Instance *inst, OfxPropertySetHandle in) {
  static int timing = -1;
  if (timing < 0) timing = getenv("VIDFX_OFX_TIMING") != NULL;
  double t0 = timing ? mono_ms() : 0, t_fetch = 0, t_copy_in = 0, t_server = 0;

  Render r = {0};
  r.inst = inst;
  g_prop->propGetDouble(in, kOfxPropTime, 0, &r.time);
  g_prop->propGetIntN(in, kOfxImageEffectPropRenderWindow, 4, &r.win.x1);
  action_scale(in, r.scale);
  vfx_reply rep = {0};
  int rc = fetch_inputs(&r);
  if (timing) t_fetch = mono_ms();
  /* pixels only for frames the server does not hold */
  if (rc == VFX_OK) rc = copy_inputs(&r, 1);
  if (timing) t_copy_in = mono_ms();
  if (rc == VFX_OK) rc = request_render(&r, &rep);
  if (rc == VFX_EREPLY && vfx_reply_get(&rep, "missing")) {
    /* the server lost frames it held (a restart, an eviction): send every frame of this
     * render once more (they are recorded as sent again on success; the other renders of the
     * instance keep their own record: clearing it would make concurrent renders resend all) */
    vfx_reply_free(&rep);
    pool_return(inst, r.buf);
    r.buf = NULL;
    rc = copy_inputs(&r, 0);
    if (timing) t_copy_in = mono_ms();
    if (rc == VFX_OK) rc = request_render(&r, &rep);
  }
  if (rc == VFX_OK) {
    for (int k = 0; k < r.nin; k++)
      for (int i = 0; i < r.counts[k]; i++) sent_add(inst, k, &r.images[k][i]);
    if (timing) t_server = mono_ms();
    rc = copy_output(&r);
  }
  if (rc == VFX_OK && timing)
    fprintf(stderr, "vidfx.ofx timing: fetch %.1f ms, copy in %.1f ms, server %.1f ms, copy out %.1f ms\n",
            t_fetch - t0, t_copy_in - t_fetch, t_server - t_copy_in, mono_ms() - t_server);
  render_release(&r);
  vfx_reply_free(&rep);
  if (rc != VFX_OK) return action_failed(inst, rc, r.err);
  clear_persistent(inst->effect, &inst->persistent);
  return kOfxStatOK;
}

/* ---- dispatch ----------------------------------------------------------------------------- */
static OfxStatus plugin_main(int index, const char *action, const void *handle, OfxPropertySetHandle in,
                             OfxPropertySetHandle out) {
  if (index < 0 || index >= g_num_nodes) return kOfxStatErrUnknown;
  NodeDesc *n = &g_nodes[index];
  OfxImageEffectHandle effect = (OfxImageEffectHandle)handle;
  if (!strcmp(action, kOfxActionLoad)) return on_load();
  if (!g_prop || !g_fx) return kOfxStatErrMissingHostFeature;
  if (!strcmp(action, kOfxActionUnload)) return kOfxStatOK;
  if (!strcmp(action, kOfxActionDescribe)) return on_describe(n, effect);
  if (!strcmp(action, kOfxImageEffectActionDescribeInContext)) return on_describe_in_context(n, effect);
  if (!strcmp(action, kOfxActionCreateInstance)) return on_create_instance(n, effect);
  if (!strcmp(action, kOfxActionDestroyInstance)) return on_destroy_instance(effect);
  /* the instance is looked up and referenced under g_instances_lock, which DestroyInstance
   * takes to detach it: an action never sees an instance being freed */
  pthread_mutex_lock(&g_instances_lock);
  Instance *inst = get_instance(effect);
  if (inst && !instance_enter(inst)) inst = NULL;
  pthread_mutex_unlock(&g_instances_lock);
  if (!inst) return strcmp(action, kOfxActionPurgeCaches) ? kOfxStatReplyDefault : kOfxStatOK;
  OfxStatus st = kOfxStatReplyDefault;
  /* the server requests of this action poll the host's abort (a starting server included) */
  AbortCtx actx = {inst, effect};
  t_abort = &actx;
  if (!strcmp(action, kOfxImageEffectActionGetRegionOfDefinition)) st = on_region_of_definition(inst, in, out);
  else if (!strcmp(action, kOfxImageEffectActionGetRegionsOfInterest)) st = on_regions_of_interest(inst, in, out);
  else if (!strcmp(action, kOfxImageEffectActionGetFramesNeeded)) st = on_frames_needed(inst, in, out);
  else if (!strcmp(action, kOfxImageEffectActionGetClipPreferences)) st = on_clip_preferences(inst, out);
  else if (!strcmp(action, kOfxImageEffectActionRender)) st = on_render(inst, in);
  else if (!strcmp(action, kOfxActionPurgeCaches)) st = on_purge_caches(inst);
  t_abort = NULL;
  instance_leave(inst);
  return st;
}
